"""Run-cache entries on a remote: ``runcache/<fingerprint>.json`` beside its objects.

Entries come from another machine, so each is checked before it is trusted: its name is a
fingerprint, its outputs are safe project paths (``mlcd.layout.project_path_problem``) with
valid digests. A bad entry raises ``ObjectError`` (or ``UnsafePath``) naming it; ``pull`` skips and reports it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest
from mlcd.errors import ConfigError, ObjectError, UnsafePath, UsageError
from mlcd.layout import project_path_problem

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore

RUNCACHE_FOLDER = "runcache"
_KEY = re.compile(r"^[0-9a-f]{64}$")


class RemoteDocuments:
    """JSON documents as ``<folder>/<key>.json`` next to a remote's objects: on a local folder
    (written atomically) or any fsspec filesystem (``s3://``, ``memory://``, ...).

    Args:
        objects: the remote's object store.
        folder: the folder beside its objects.
        what: what the documents are, for messages ("run-cache entries").
        key: the pattern a document's key must match to be listed.
    """

    def __init__(self, objects: ObjectStore, folder: str, what: str, key: re.Pattern[str]) -> None:
        from mlcd.objects import LocalObjectStore

        self.url = objects.url
        self.what = what
        self._key = key
        if isinstance(objects, LocalObjectStore):
            self.fs: Any = None
            self.base = str(objects.root / folder)
        elif hasattr(objects, "fs") and hasattr(objects, "base"):
            self.fs = objects.fs
            self.base = f"{objects.base}/{folder}"
        else:
            raise ConfigError(
                f"the remote {objects.url} cannot hold {what}",
                hint="use a folder or an fsspec URL (s3://, gs://, ...) as the remote",
            )

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}.json"

    def list(self) -> set[str]:
        """The keys of the documents stored."""
        if self.fs is None:
            names = os.listdir(self.base) if os.path.isdir(self.base) else []
        elif self.fs.exists(self.base):
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.base, detail=False)]
        else:
            names = []
        keys = (n[: -len(".json")] for n in names if n.endswith(".json"))
        return {k for k in keys if self._key.match(k)}

    def read(self, key: str, label: str) -> Any:
        """One document's JSON; ``label`` names it in the error.

        Raises:
            ObjectError: it cannot be read or is not JSON.
        """
        try:
            if self.fs is None:
                data = Path(self._path(key)).read_bytes()
            else:
                data = bytes(self.fs.cat_file(self._path(key)))
            return json.loads(data)
        except (OSError, ValueError) as exc:
            raise ObjectError(
                f"{label} on {self.url} cannot be read: {exc}",
                hint="push it again from a clone that has it, or delete the file",
            ) from exc

    def write(self, key: str, data: bytes) -> None:
        """Store a document (atomically on a local folder)."""
        path = self._path(key)
        if self.fs is None:
            os.makedirs(self.base, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:
            self.fs.makedirs(self.base, exist_ok=True)
            self.fs.pipe_file(path, data)


class RunCacheFiles(RemoteDocuments):
    """Run-cache entries as ``runcache/<fingerprint>.json`` files next to a remote's objects."""

    def __init__(self, objects: ObjectStore) -> None:
        super().__init__(objects, RUNCACHE_FOLDER, "run-cache entries", _KEY)

    def get(self, fingerprint: str) -> dict[str, Any]:
        """One entry, checked for shape (a malformed entry raises ``ObjectError``)."""
        entry = self.read(fingerprint, f"run-cache entry {fingerprint}")
        return validate_entry(entry, fingerprint, self.url)

    def put(self, entry: Mapping[str, Any]) -> None:
        """Write an entry (atomically on a local folder)."""
        data = json.dumps(dict(entry), sort_keys=True, default=str).encode()
        self.write(str(entry["fingerprint"]), data)


def validate_entry(entry: Any, fingerprint: str, where: str) -> dict[str, Any]:
    """Check a run-cache entry fetched from elsewhere before it is trusted.

    Raises:
        ObjectError: wrong fingerprint, or outputs that are not ``{path: digest}``.
        UnsafePath: an output path that is not a safe project path.
    """
    problem = None
    if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
        problem = "its fingerprint does not match its name"
    elif not isinstance(entry.get("outputs"), dict) or not isinstance(entry.get("stage"), str):
        problem = "it has no 'outputs' mapping or 'stage' name"
    else:
        for path, digest in entry["outputs"].items():
            unsafe = project_path_problem(path)
            if unsafe is not None:
                raise UnsafePath(
                    f"run-cache entry {fingerprint} on {where}: output {path!r} {unsafe}; "
                    "refused, nothing was written",
                    hint="mlcd never writes such an entry: delete that file from the remote",
                )
            try:
                Digest.parse(str(digest))
            except (UsageError, ValueError):
                problem = f"output {path!r} has a bad digest {digest!r}"
                break
    if problem:
        raise ObjectError(
            f"run-cache entry {fingerprint} on {where} is invalid: {problem}",
            hint="delete that file from the remote; it will be pushed again correctly",
        )
    return {
        "fingerprint": fingerprint,
        "stage": entry["stage"],
        "outputs": dict(entry["outputs"]),
        "metrics": dict(entry.get("metrics") or {}),
        "run_id": entry.get("run_id"),
        "created_at": float(entry.get("created_at") or 0.0),
    }
