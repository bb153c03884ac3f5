"""Garbage collection and verification of the object store.

What is referenced: everything the metadata store points at (run cache, run artifacts,
stage logs, model versions and reference profiles, gate reports, prediction segments) and
the outputs recorded in ``mlcd.lock`` (not its stage fingerprints nor the digests of deps,
which are not objects); directory manifests keep their entries alive. Objects younger
than a grace period are kept too, so a concurrent writer that stored an object but has not
yet recorded it never loses it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mlcd.digest import Digest
from mlcd.errors import MlcdError
from mlcd.objects import LocalObjectStore, ObjectStore
from mlcd.store import Store
from mlcd.store import tables as t

_DIGEST = re.compile(r"\b([0-9a-f]{64})(\.dir)?\b")
DEFAULT_GRACE_S = 3600.0


@dataclass
class GcReport:
    """What ``mlcd gc`` found and did."""

    referenced: int = 0
    stored: int = 0
    removed: list[str] = field(default_factory=list)
    kept_recent: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dry_run: bool = False
    #: prediction-log retention (``monitor.log_retention``): what was dropped, or None
    log: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "referenced": self.referenced,
            "stored": self.stored,
            "removed": self.removed,
            "kept_recent": self.kept_recent,
            "corrupt": self.corrupt,
            "missing": self.missing,
            "dry_run": self.dry_run,
            "log": self.log,
        }


def digests_in_text(text: str) -> set[Digest]:
    """Every digest (``HEX`` or ``HEX.dir``) written in a text such as ``mlcd.lock``."""
    return {Digest(m.group(1), is_dir=bool(m.group(2))) for m in _DIGEST.finditer(text)}


def lock_references(path: Path) -> set[Digest]:
    """The output digests of an ``mlcd.lock`` (its fingerprints and deps are not objects).

    A lock that cannot be parsed is read as text instead: every digest in it is kept, so a
    damaged lock never gets an object deleted.
    """
    from mlcd.pipeline.lockfile import parse_lock

    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        entries = parse_lock(text, path)
    except MlcdError:
        return digests_in_text(text)
    return digests_in_text("\n".join(d for e in entries.values() for d in e.outs.values()))


def _walk_json(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_json(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_json(item)


def store_references(store: Store) -> set[Digest]:
    """Digests the metadata store points at."""
    found: set[str] = set()
    with store.read() as conn:
        for column in (
            t.run_artifacts.c.digest,
            t.run_stages.c.log_digest,
            t.model_versions.c.digest,
            t.model_versions.c.reference_digest,
            t.events.c.report_digest,
            t.prediction_segments.c.digest,
            t.data_windows.c.digest,  # continual learning: replay and no-forgetting windows
        ):
            found.update(v for v in conn.execute(select(column).distinct()).scalars() if v)
        for outputs, metrics in conn.execute(select(t.run_cache.c.outputs, t.run_cache.c.metrics)):
            found.update(_walk_json(outputs))
            found.update(_walk_json(metrics))
    return digests_in_text("\n".join(found))


def collect_garbage(
    store: Store,
    objects: ObjectStore,
    extra_roots: Iterable[Path] = (),
    dry_run: bool = False,
    verify: bool = False,
    grace_s: float = DEFAULT_GRACE_S,
    progress: Callable[[int], None] | None = None,
    log_root: Path | None = None,
    log_retention: str | None = None,
) -> GcReport:
    """Remove unreferenced objects; with ``verify``, also drop objects whose bytes are corrupt.

    ``extra_roots`` are files whose digests are references too; for an ``mlcd.lock``, the
    digests of its outputs. With ``log_retention`` (``90d``), prediction-log segments whose
    newest row is older are dropped too (rows, then files; ``log_root`` is the project root
    local segment paths are relative to). Data windows keep their own copies in the object
    store, so continual learning loses nothing.

    Raises:
        ConfigError: ``log_retention`` is not a duration.
    """
    log_report = None
    if log_retention is not None:
        from mlcd.durations import parse_duration
        from mlcd.errors import ConfigError
        from mlcd.logdata.compact import expire_log

        try:
            seconds = parse_duration(log_retention, ConfigError)
        except ConfigError as exc:
            raise ConfigError(f"monitor.log_retention: {exc.message}", hint=exc.hint) from exc
        log_report = expire_log(store, log_root or Path("."), seconds, dry_run=dry_run).to_dict()
    roots = store_references(store)
    for path in extra_roots:
        if path.is_file():
            if path.name == "mlcd.lock":
                roots |= lock_references(path)
            else:
                roots |= digests_in_text(path.read_text(encoding="utf-8", errors="replace"))
    keep = objects.expand(roots)
    report = GcReport(referenced=len(keep), dry_run=dry_run, log=log_report)
    stored = set()
    cutoff = time.time() - grace_s
    for index, digest in enumerate(objects.iter_digests(), 1):
        stored.add(digest.hex)
        if progress:
            progress(index)
        if verify and not objects.verify(digest):
            report.corrupt.append(digest.hex)
            if not dry_run:
                objects.delete(digest)
            continue
        if digest.hex in keep:
            continue
        if (
            isinstance(objects, LocalObjectStore)
            and objects.path_of(digest).stat().st_mtime > cutoff
        ):
            report.kept_recent += 1
            continue
        report.removed.append(digest.hex)
        if not dry_run:
            objects.delete(digest)
    report.stored = len(stored)
    report.missing = sorted(h for h in keep if h not in stored)
    if not dry_run and isinstance(objects, LocalObjectStore):
        objects.clean_staging()
    return report


def verify_objects(
    objects: ObjectStore, progress: Callable[[int], None] | None = None
) -> list[str]:
    """Hex of every stored object whose bytes no longer match its digest."""
    bad = []
    for index, digest in enumerate(objects.iter_digests(), 1):
        if not objects.verify(digest):
            bad.append(digest.hex)
        if progress:
            progress(index)
    return bad
