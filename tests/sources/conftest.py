"""Source fixtures: the real projects and CLI of the pipeline tests, the moto S3 server of the
object-store tests."""

from __future__ import annotations

from tests.pipeline.conftest import make_project, mlcd  # noqa: F401  (fixtures)
