"""Transfer: ``mlcd push`` / ``mlcd pull`` of objects and run-cache entries to a remote.

Objects travel through the ``ObjectStore`` port (``copy_objects`` verifies every blob before
writing it); run-cache entries are small JSON files under ``runcache/`` beside the remote's
objects, named by fingerprint. Only what the other side lacks is sent, file blobs before the
manifests that list them, so an interrupted push never leaves a remote folder whose files are
missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest
from mlcd.errors import ConfigError, MlcdError, ObjectError, UsageError

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.pipeline.snapshot import Snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.store import Store

RUNCACHE_FOLDER = "runcache"
_COPY_THREADS = 8
_CHUNK = 64


@dataclass
class TransferReport:
    """What a push or pull moved."""

    remote: str
    objects_copied: int = 0
    objects_present: int = 0
    entries_copied: int = 0
    restored: list[str] = field(default_factory=list)
    skipped_modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "objects_copied": self.objects_copied,
            "objects_present": self.objects_present,
            "entries_copied": self.entries_copied,
            "restored": self.restored,
            "skipped_modified": self.skipped_modified,
            "missing": self.missing,
        }


class RunCacheFiles:
    """Run-cache entries as ``runcache/<fingerprint>.json`` files next to a remote's objects.

    Works on a local folder and on any fsspec filesystem (``s3://``, ``memory://``, ...).
    """

    def __init__(self, objects: ObjectStore) -> None:
        from mlcd.objects import LocalObjectStore

        self.url = objects.url
        if isinstance(objects, LocalObjectStore):
            self.fs: Any = None
            self.base = str(objects.root / RUNCACHE_FOLDER)
        elif hasattr(objects, "fs") and hasattr(objects, "base"):
            self.fs = objects.fs
            self.base = f"{objects.base}/{RUNCACHE_FOLDER}"
        else:
            raise ConfigError(
                f"the remote {objects.url} cannot hold run-cache entries",
                hint="use a folder or an fsspec URL (s3://, gs://, ...) as the remote",
            )

    def _path(self, fingerprint: str) -> str:
        return f"{self.base}/{fingerprint}.json"

    def list(self) -> set[str]:
        """Fingerprints of the entries stored."""
        if self.fs is None:
            if not os.path.isdir(self.base):
                return set()
            names = os.listdir(self.base)
        else:
            if not self.fs.exists(self.base):
                return set()
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.base, detail=False)]
        return {n[: -len(".json")] for n in names if n.endswith(".json") and len(n) == 69}

    def get(self, fingerprint: str) -> dict[str, Any]:
        """One entry, checked for shape (a malformed entry raises ``ObjectError``)."""
        try:
            if self.fs is None:
                data = Path(self._path(fingerprint)).read_bytes()
            else:
                data = bytes(self.fs.cat_file(self._path(fingerprint)))
            entry = json.loads(data)
        except (OSError, ValueError) as exc:
            raise ObjectError(
                f"run-cache entry {fingerprint} on {self.url} cannot be read: {exc}",
                hint="push it again from a clone that has it, or delete the file",
            ) from exc
        return validate_entry(entry, fingerprint, self.url)

    def put(self, entry: Mapping[str, Any]) -> None:
        """Write an entry (atomically on a local folder)."""
        data = json.dumps(dict(entry), sort_keys=True, default=str).encode()
        path = self._path(str(entry["fingerprint"]))
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


def validate_entry(entry: Any, fingerprint: str, where: str) -> dict[str, Any]:
    """Check a run-cache entry fetched from elsewhere before it is trusted.

    Raises:
        ObjectError: wrong fingerprint, or outputs that are not ``{path: digest}``.
    """
    problem = None
    if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
        problem = "its fingerprint does not match its name"
    elif not isinstance(entry.get("outputs"), dict) or not isinstance(entry.get("stage"), str):
        problem = "it has no 'outputs' mapping or 'stage' name"
    else:
        try:
            for path, digest in entry["outputs"].items():
                Digest.parse(str(digest))
                if not isinstance(path, str) or path.startswith(("/", "../")) or "/../" in path:
                    raise ValueError(path)
        except (UsageError, ValueError):
            problem = "an output has a bad path or digest"
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


def copy_missing(
    source: ObjectStore,
    target: ObjectStore,
    digests: Iterable[str],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Copy to ``target`` what it lacks of ``digests`` (folders expanded), in threads.

    Returns:
        ``(copied, already there)`` counted in blobs.

    Raises:
        ObjectNotFound: ``source`` lacks a blob that is wanted.
        CorruptObject: a source blob does not match its digest (nothing bad is written).
    """
    from mlcd.objects import copy_objects

    files: dict[str, Digest] = {}
    manifests: dict[str, Digest] = {}
    for text in digests:
        digest = Digest.parse(text)
        if digest.is_dir:
            plain = Digest(digest.hex)
            if target.has(plain):
                manifests.setdefault(digest.hex, plain)
                continue  # a manifest is written last: if it is there, its files are too
            for entry in source.read_manifest(digest):
                files.setdefault(entry.digest.hex, entry.digest)
            manifests[digest.hex] = plain
        else:
            files.setdefault(digest.hex, digest)
    wanted = [d for d in files.values() if not target.has(d)]
    present = len(files) - len(wanted)
    done = 0
    total = len(wanted) + len(manifests)

    def copy(chunk: list[Digest]) -> int:
        return len(copy_objects(source, target, chunk))

    chunks = [wanted[i : i + _CHUNK] for i in range(0, len(wanted), _CHUNK)]
    copied = 0
    if chunks:
        with ThreadPoolExecutor(max_workers=_COPY_THREADS) as pool:
            for count, chunk in zip(pool.map(copy, chunks), chunks, strict=True):
                copied += count
                done += len(chunk)
                if progress:
                    progress(done, total)
    todo_manifests = [m for m in manifests.values() if not target.has(m)]
    present += len(manifests) - len(todo_manifests)
    copied += len(copy_objects(source, target, todo_manifests))
    if progress:
        progress(total, total)
    return copied, present


def _available(source: ObjectStore, digests: Iterable[str], report: TransferReport) -> list[str]:
    """The digests whose top-level object ``source`` has; the others go to ``report.missing``."""
    found = []
    for text in dict.fromkeys(digests):
        if source.has(Digest(Digest.parse(text).hex)):
            found.append(text)
        else:
            report.missing.append(text)
    return found


def push(
    root: Path,
    snapshot: Snapshot,
    store: Store,
    local: ObjectStore,
    remote: ObjectStore,
    all_entries: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TransferReport:
    """Send the objects of ``mlcd.lock`` and tracked data, and run-cache entries, to a remote.

    Args:
        all_entries: push every run-cache entry (default: the entries of the fingerprints in
            ``mlcd.lock``, i.e. the current state of each stage).
    """
    from mlcd.pipeline.data import find_pointers
    from mlcd.store import cache

    report = TransferReport(remote.url)
    wanted = [d for entry in snapshot.lock.values() for d in entry.outs.values()]
    wanted += [p.digest for p in find_pointers(root, _stage_outputs(snapshot))]
    with store.read() as conn:
        if all_entries:
            entries = cache.all_entries(conn)
        else:
            found = (cache.get_entry(conn, e.fingerprint) for e in snapshot.lock.values())
            entries = [e for e in found if e is not None]
    for entry in entries:
        wanted += list(entry["outputs"].values())
    present = _available(local, wanted, report)
    report.objects_copied, report.objects_present = copy_missing(local, remote, present, progress)
    files = RunCacheFiles(remote)
    there = files.list()
    stored = set(present)
    for entry in entries:
        if entry["fingerprint"] in there:
            continue
        if not set(entry["outputs"].values()) <= stored:
            continue  # its objects are not here: an entry the remote could not restore
        files.put(entry)
        report.entries_copied += 1
    return report


def _restorable_outputs(snapshot: Snapshot, store: Store, statcache: StatCache) -> list[str]:
    """Digests ``mlcd run`` would restore from the run cache, stage after stage.

    Each stage's fingerprint is computed as if its upstream stages had already been restored
    from their entries, so a whole chain that ran elsewhere comes down in one pull.
    """
    from mlcd.pipeline.fingerprint import stage_fingerprint, stage_params
    from mlcd.pipeline.status import Digests
    from mlcd.store import cache

    try:
        snapshot.dag.check_deps_exist(snapshot.root)
    except MlcdError:
        return []  # 'mlcd run' will say what is missing
    digests = Digests(snapshot.root, statcache)
    expected: dict[str, str] = {}
    wanted: list[str] = []
    with store.read() as conn:
        for name in snapshot.dag.order:
            spec = snapshot.stages[name]
            try:
                params = stage_params(spec, snapshot.params)
            except MlcdError:
                continue
            deps = {dep: expected.get(dep, digests.of(dep)) for dep in spec.deps}
            entry = cache.get_entry(conn, stage_fingerprint(spec, deps, params))
            if entry is None:
                continue
            outputs = {p: d for p, d in entry["outputs"].items() if p in spec.produced}
            expected.update(outputs)
            wanted.extend(outputs.values())
    return wanted


def _stage_outputs(snapshot: Snapshot) -> list[str]:
    return [p for spec in snapshot.stages.values() for p in spec.produced]


def pull(
    root: Path,
    snapshot: Snapshot,
    store: Store,
    local: ObjectStore,
    remote: ObjectStore,
    statcache: StatCache,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TransferReport:
    """Fetch run-cache entries and the objects the workspace needs, then restore missing files.

    Tracked data and the outputs recorded in ``mlcd.lock`` that are missing from the
    workspace are written; a file modified locally is left alone (listed in
    ``skipped_modified``) unless ``force``. Objects of the run-cache entries matching the
    stages' current fingerprints are fetched too, so the next ``mlcd run`` restores instead
    of running.
    """
    from mlcd.pipeline.data import find_pointers
    from mlcd.pipeline.outputs import restore_outputs
    from mlcd.store import cache

    report = TransferReport(remote.url)
    files = RunCacheFiles(remote)
    with store.read() as conn:
        known = {e["fingerprint"] for e in cache.all_entries(conn)}
    fetched = [files.get(fp) for fp in sorted(files.list() - known)]
    if fetched:
        store.transact(lambda conn: cache.import_entries(conn, fetched))
    report.entries_copied = len(fetched)

    pointers = find_pointers(root, _stage_outputs(snapshot))
    targets: dict[str, str] = {p.path: p.digest for p in pointers}
    for entry in snapshot.lock.values():
        targets.update(entry.outs)
    wanted = _available(remote, targets.values(), report)
    copied, present = copy_missing(remote, local, wanted, progress)
    report.objects_copied += copied
    report.objects_present += present

    missing = set(report.missing)
    current = {path: statcache.path_digest(root / path) for path in targets}
    restore = {}
    for path, digest in targets.items():
        if digest in missing or current[path] == digest:
            continue
        if current[path] is not None and not force:
            report.skipped_modified.append(path)
            continue
        restore[path] = digest
    report.restored = restore_outputs(local, statcache, root, restore, current)

    # Stages whose inputs changed since mlcd.lock: fetch what the run cache can restore.
    extra = _restorable_outputs(snapshot, store, statcache)
    if extra:
        copied, present = copy_missing(remote, local, _available(remote, extra, report), progress)
        report.objects_copied += copied
        report.objects_present += present
    statcache.flush()
    return report
