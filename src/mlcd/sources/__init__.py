"""Sources outside the project as stage inputs: a SQL query, a file or prefix behind a URL.

A stage declares them under ``sources:``; before the stage is judged mlcd writes each to its
``path`` inside the project (:func:`materialize`), and that file is a dep like any other: its
content digest is the fingerprint, so a changed table re-runs exactly what depends on it and
an unchanged one restores from the run cache. A cheap check (a ``freshness`` query, an object
listing's ETags and sizes) skips re-reading a source that did not move since it was last
written, when the file on disk is still the one written then.

Credentials never travel: ``${NAME}`` in a URL is filled from the environment when the source
is read, and what is recorded (mlcd.lock, the store, events) is the file's digest, never the URL.
"""

from mlcd.sources.read import Fetched, expand_env, materialize

__all__ = ["Fetched", "expand_env", "materialize"]
