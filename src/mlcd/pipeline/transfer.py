"""Transfer: ``mlcd push`` / ``mlcd pull`` of objects and run-cache entries to a remote.

Objects travel through the ``ObjectStore`` port (``copy_objects`` verifies every blob before
writing it); run-cache entries are small JSON files under ``runcache/`` beside the remote's
objects, named by fingerprint (``cachefiles``). Only what the other side lacks is sent, file
blobs before the manifests that list them, so an interrupted push never leaves a remote folder
whose files are missing.

A pull checks every path it would write (``mlcd.layout.project_path``) before fetching
anything: one unsafe path in ``mlcd.lock`` or a pointer file stops it with nothing written.
A bad remote object or run-cache entry (corrupt, or a manifest with an unsafe entry) is
skipped; everything else is restored and the bad ones are listed in ``TransferReport.bad``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest
from mlcd.errors import CheckFailed, MlcdError, ObjectError, UnsafePath
from mlcd.layout import project_path
from mlcd.pipeline.cachefiles import RUNCACHE_FOLDER, RunCacheFiles, validate_entry

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.pipeline.snapshot import Snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.store import Store

__all__ = ["RUNCACHE_FOLDER", "RunCacheFiles", "TransferReport", "pull", "push", "validate_entry"]

_COPY_THREADS = 4
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
    bad: list[BadItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "objects_copied": self.objects_copied,
            "objects_present": self.objects_present,
            "entries_copied": self.entries_copied,
            "restored": self.restored,
            "skipped_modified": self.skipped_modified,
            "missing": self.missing,
            "bad": [item.to_dict() for item in self.bad],
        }

    def add_bad(self, kind: str, ident: str, problem: str, unsafe: bool, path: str = "") -> None:
        """Record a skipped object or entry (one item per object, its paths gathered)."""
        for item in self.bad:
            if (item.kind, item.id) == (kind, ident):
                if path and path not in item.paths:
                    item.paths.append(path)
                return
        self.bad.append(BadItem(kind, ident, [path] if path else [], problem, unsafe))


@dataclass
class BadItem:
    """A remote object or run-cache entry a pull skipped, and why."""

    kind: str  # "object" | "run-cache entry"
    id: str
    paths: list[str]
    problem: str
    unsafe: bool  # a manifest entry or output path that would write outside the project

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "paths": self.paths,
            "problem": self.problem,
            "unsafe": self.unsafe,
        }


def bad_items_error(bad: list[dict[str, Any]]) -> MlcdError:
    """The error a pull with skipped items exits with: 2 if one was unsafe, else 1 (a check).

    Args:
        bad: ``TransferReport.to_dict()["bad"]``.
    """
    names = "; ".join(
        f"{item['kind']} {item['id'][:12]} ({', '.join(item['paths']) or 'no path'}): "
        f"{item['problem']}"
        for item in bad[:5]
    )
    message = f"{len(bad)} remote item(s) skipped, everything else was restored: {names}"
    hint = (
        "delete the bad objects or entries from the remote and push them again from a clone "
        "that has them good; the outputs they would restore are rebuilt by 'mlcd run'"
    )
    if any(item["unsafe"] for item in bad):
        return UnsafePath(message, hint=hint)
    return CheckFailed(message, hint=hint)


def copy_missing(
    source: ObjectStore,
    target: ObjectStore,
    digests: Iterable[str],
    progress: Callable[[int, int], None] | None = None,
    bad: dict[str, tuple[str, str, bool]] | None = None,
) -> tuple[int, int]:
    """Copy to ``target`` what it lacks of ``digests`` (folders expanded), in threads.

    Args:
        bad: if given, a blob or manifest that cannot be copied does not stop the others:
            ``bad[digest] = (hex of the bad blob, problem, unsafe)`` for each of ``digests``
            it spoils, and a folder with a bad file gets no manifest in ``target``.

    Returns:
        ``(copied, already there)`` counted in blobs.

    Raises:
        ObjectNotFound: ``source`` lacks a blob that is wanted (only without ``bad``).
        CorruptObject: a source blob does not match its digest (nothing bad is written).
    """
    from mlcd.objects import copy_objects

    files: dict[str, Digest] = {}
    manifests: dict[str, Digest] = {}
    needs: dict[str, list[str]] = {}  # each of digests -> hex of the blobs it needs
    for text in digests:
        digest = Digest.parse(text)
        if digest.is_dir:
            plain = Digest(digest.hex)
            if target.has(plain):
                manifests.setdefault(digest.hex, plain)
                continue  # a manifest is written last: if it is there, its files are too
            try:
                entries = source.read_manifest(digest)
            except (ObjectError, UnsafePath) as exc:
                if bad is None:
                    raise
                bad[text] = (digest.hex, exc.message, isinstance(exc, UnsafePath))
                continue
            for entry in entries:
                files.setdefault(entry.digest.hex, entry.digest)
            needs[text] = [e.digest.hex for e in entries]
            manifests[digest.hex] = plain
        else:
            files.setdefault(digest.hex, digest)
            needs[text] = [digest.hex]
    wanted = [d for d in files.values() if not target.has(d)]
    present = len(files) - len(wanted)
    done = 0
    total = len(wanted) + len(manifests)
    failed: dict[str, str] = {}

    def copy(chunk: list[Digest]) -> int:  # the chunks run in threads: one blob at a time each
        if bad is None:
            return len(copy_objects(source, target, chunk, threads=1))
        count = 0
        for digest in chunk:
            try:
                count += len(copy_objects(source, target, [digest], threads=1))
            except ObjectError as exc:
                failed[digest.hex] = exc.message
        return count

    # as many chunks as threads when blobs are few (a handful of large blobs move at once)
    size = max(1, min(_CHUNK, -(-len(wanted) // _COPY_THREADS)))
    chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)]
    copied = 0
    if chunks:
        with ThreadPoolExecutor(max_workers=_COPY_THREADS) as pool:
            for count, chunk in zip(pool.map(copy, chunks), chunks, strict=True):
                copied += count
                done += len(chunk)
                if progress:
                    progress(done, total)
    if bad is not None and failed:
        for text, hexes in needs.items():
            first = next((h for h in hexes if h in failed), None)
            if first is not None:
                bad[text] = (first, failed[first], False)
                manifests.pop(Digest.parse(text).hex, None)
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


def _remote_failures(action: str) -> Callable[[Callable[..., TransferReport]], Any]:
    """Turn a remote driver's own exception (botocore, gcsfs, an HTTP client...) into an
    ``ObjectError`` that names the remote and says what to check, instead of a traceback."""
    import functools

    def wrap(function: Callable[..., TransferReport]) -> Callable[..., TransferReport]:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> TransferReport:
            try:
                return function(*args, **kwargs)
            except (MlcdError, KeyboardInterrupt):
                raise
            except Exception as exc:
                remote = kwargs.get("remote", args[4] if len(args) > 4 else None)
                where = getattr(remote, "url", "the remote")
                raise ObjectError(
                    f"{action} the remote {where} failed: {type(exc).__name__}: {exc}",
                    hint="check the remote's URL, its credentials (environment or 'options:' "
                    "in mlcd.yaml) and that it is reachable; nothing local was changed",
                ) from exc

        return guarded

    return wrap


@_remote_failures("pushing to")
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


@_remote_failures("pulling from")
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

    # Every path this pull may write is checked before anything is fetched or written.
    pointers = find_pointers(root, _stage_outputs(snapshot))
    targets: dict[str, str] = {}
    for pointer in pointers:
        project_path(root, pointer.path, f"{pointer.pointer_path}: path")
        targets[pointer.path] = pointer.digest
    for name, entry in snapshot.lock.items():
        for path, digest in entry.outs.items():
            project_path(root, path, f"mlcd.lock: stage '{name}': out")
            targets[path] = digest

    report = TransferReport(remote.url)
    files = RunCacheFiles(remote)
    with store.read() as conn:
        known = {e["fingerprint"] for e in cache.all_entries(conn)}
    fetched = []
    for fingerprint in sorted(files.list() - known):
        try:
            fetched.append(files.get(fingerprint))
        except (ObjectError, UnsafePath) as exc:
            unsafe = isinstance(exc, UnsafePath)
            report.add_bad("run-cache entry", fingerprint, exc.message, unsafe)
    if fetched:
        store.transact(lambda conn: cache.import_entries(conn, fetched))
    report.entries_copied = len(fetched)

    wanted = _available(remote, targets.values(), report)
    bad: dict[str, tuple[str, str, bool]] = {}
    copied, present = copy_missing(remote, local, wanted, progress, bad)
    report.objects_copied += copied
    report.objects_present += present

    skip = set(report.missing) | set(bad)
    current = {path: statcache.path_digest(root / path) for path in targets}
    for path, digest in targets.items():
        if digest in bad:
            report.add_bad("object", bad[digest][0], bad[digest][1], bad[digest][2], path)
        if digest in skip or current[path] == digest:
            continue
        if current[path] is not None and not force:
            report.skipped_modified.append(path)
            continue
        try:
            report.restored += restore_outputs(local, statcache, root, {path: digest}, current)
        except (ObjectError, UnsafePath) as exc:  # e.g. a bad manifest already stored here
            hex_ = Digest.parse(digest).hex
            report.add_bad("object", hex_, exc.message, isinstance(exc, UnsafePath), path)

    # Stages whose inputs changed since mlcd.lock: fetch what the run cache can restore.
    extra = _restorable_outputs(snapshot, store, statcache)
    if extra:
        bad = {}
        available = _available(remote, extra, report)
        copied, present = copy_missing(remote, local, available, progress, bad)
        report.objects_copied += copied
        report.objects_present += present
        for hex_, problem, unsafe in bad.values():
            report.add_bad("object", hex_, problem, unsafe)
    statcache.flush()
    return report
