"""``mlcd doctor``: the database, the objects and the lock checked against each other.

Four checks, each read-only, each problem with how to fix it:

1. the metadata database itself (SQLite ``PRAGMA integrity_check``, or a PostgreSQL
   connection) and its schema revision against the one this mlcd expects;
2. every stored object against its digest (``mlcd verify``);
3. every output digest in ``mlcd.lock`` and every pointer file (``*.mlcd``) present in the
   object store, with the folder's files for a directory digest; one that is only on the
   remote is a note ("run mlcd pull"), not a problem;
4. every run-cache entry's outputs present in the object store.

Later checks that need an earlier one (the run cache needs a readable database) are skipped
with a note when it failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest
from mlcd.errors import ConfigError, MlcdError, ObjectError, UsageError
from mlcd.store.db import HEAD, check_database

if TYPE_CHECKING:
    from pathlib import Path

    from mlcd.config import Config
    from mlcd.objects import ObjectStore


@dataclass(frozen=True)
class Problem:
    """One thing found wrong, and how to fix it."""

    area: str  # "database" | "objects" | "lock" | "pointers" | "run cache"
    message: str
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "message": self.message, "fix": self.fix}


@dataclass
class DoctorReport:
    """Everything ``mlcd doctor`` checked and found."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """True when no problem was found (notes do not count)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": [p.to_dict() for p in self.problems],
            "notes": self.notes,
            "checked": self.checked,
        }


_REBUILD = "run 'mlcd run' to rebuild it, or 'mlcd pull' from a remote that has it"


def diagnose(
    root: Path, config: Config, objects: ObjectStore, remote: ObjectStore | None = None
) -> DoctorReport:
    """Run every check on the project at ``root``; never changes anything.

    Args:
        root: the project root.
        config: its configuration (the store URL is read from it).
        objects: its object store.
        remote: the default remote, asked about objects missing locally (None: not asked).
    """
    report = DoctorReport()
    database_ok = _check_database(root, config, report)
    _check_objects(objects, report)
    _check_lock_and_pointers(root, objects, remote, report)
    if database_ok:
        _check_run_cache(root, config, objects, report)
    else:
        report.notes.append("run-cache entries were not checked: the database is not readable")
    return report


def _check_database(root: Path, config: Config, report: DoctorReport) -> bool:
    problems, revision = check_database(config.store, root)
    report.checked["database"] = 1
    for problem in problems:
        report.problems.append(
            Problem(
                "database",
                problem,
                "restore .mlcd/mlcd.db from a backup; or move it aside and run any mlcd "
                "command to start an empty one (the objects and mlcd.lock stay, so "
                "'mlcd run' restores outputs from the object store instead of re-running)"
                if config.store.startswith("sqlite")
                else "check that PostgreSQL is running and that 'store:' (or MLCD_STORE) is right",
            )
        )
    if problems:
        return False
    if revision is None:
        report.notes.append("the database has no schema yet: the next command creates it")
        return False
    if revision != HEAD:
        if revision.isdigit() and HEAD.isdigit() and int(revision) > int(HEAD):
            report.problems.append(
                Problem(
                    "database",
                    f"the database schema is {revision}, newer than this mlcd knows ({HEAD})",
                    "upgrade mlcd ('pip install -U mlcd') to the version that wrote it",
                )
            )
        else:
            report.notes.append(
                f"the database schema is {revision}; the next command migrates it to {HEAD}"
            )
        return False
    return True


def _check_objects(objects: ObjectStore, report: DoctorReport) -> None:
    count = 0
    for count, digest in enumerate(objects.iter_digests(), 1):  # noqa: B007 (counted)
        if objects.verify(digest):
            continue
        report.problems.append(
            Problem(
                "objects",
                f"object {digest.hex} is corrupt: its bytes no longer match its digest",
                "run 'mlcd gc --verify' to drop it, then 'mlcd pull' or 'mlcd run' to bring "
                "it back",
            )
        )
    report.checked["objects"] = count


def _missing(objects: ObjectStore, text: str) -> str | None:
    """Why the object ``text`` (``HEX`` or ``HEX.dir``) is not fully stored, or None."""
    try:
        digest = Digest.parse(text)
    except UsageError:
        return f"{text!r} is not a digest"
    if not objects.has(digest):
        return "is not in the object store"
    if digest.is_dir:
        try:
            entries = objects.read_manifest(digest)
        except (ObjectError, ConfigError) as exc:  # ConfigError: an unsafe entry name
            return f"has an unreadable folder listing ({exc.message})"
        absent = [e.path for e in entries if not objects.has(e.digest)]
        if absent:
            return f"lacks {len(absent)} of its {len(entries)} file(s) (e.g. {absent[0]})"
    return None


def _report_missing(
    report: DoctorReport,
    area: str,
    items: Iterable[tuple[str, str]],
    stores: tuple[ObjectStore, ObjectStore | None],
    fix: str,
) -> int:
    count = 0
    for what, text in items:
        count += 1
        problem = _missing_here(report, text, *stores)
        if problem is not None:
            report.problems.append(Problem(area, f"{what} ({text[:12]}…) {problem}", fix))
    return count


def _missing_here(
    report: DoctorReport, text: str, objects: ObjectStore, remote: ObjectStore | None
) -> str | None:
    """The problem with ``text`` locally, or None (a note when only the remote has it)."""
    problem = _missing(objects, text)
    if problem is None:
        return None
    if remote is not None:
        try:
            if _missing(remote, text) is None:
                report.notes.append(f"{text[:12]}… is only on the remote: run 'mlcd pull'")
                return None
        except (MlcdError, OSError) as exc:
            report.notes.append(f"the remote could not be asked for {text[:12]}…: {exc}")
    return problem


def _check_lock_and_pointers(
    root: Path, objects: ObjectStore, remote: ObjectStore | None, report: DoctorReport
) -> None:
    from mlcd.pipeline.data import find_pointers
    from mlcd.pipeline.snapshot import load_snapshot

    try:
        snapshot = load_snapshot(root, use_cache=False)
    except MlcdError as exc:
        report.problems.append(
            Problem("lock", exc.message, exc.hint or "fix mlcd.yaml, mlcd.lock or params")
        )
        return
    outs: list[tuple[str, str]] = []
    for name, entry in snapshot.lock.items():
        spec = snapshot.stages.get(name)
        uncached = {o.path for o in spec.outs if not o.cache} if spec else set()
        outs += [
            (f"mlcd.lock: stage '{name}': out '{path}'", digest)
            for path, digest in entry.outs.items()
            if path not in uncached
        ]
    stores = (objects, remote)
    report.checked["lock outputs"] = _report_missing(report, "lock", outs, stores, _REBUILD)
    try:
        produced = [p for spec in snapshot.stages.values() for p in spec.produced]
        pointers = find_pointers(root, produced)
    except MlcdError as exc:
        report.problems.append(Problem("pointers", exc.message, exc.hint or ""))
        return
    report.checked["pointers"] = _report_missing(
        report,
        "pointers",
        [(f"{p.pointer_path}: {p.path}", p.digest) for p in pointers],
        stores,
        "run 'mlcd pull' from a remote that has it, or track the data again with "
        "'mlcd data add' if you still have it",
    )


def _check_run_cache(
    root: Path, config: Config, objects: ObjectStore, report: DoctorReport
) -> None:
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.store import Store, cache

    store = Store(config.store, root=root, migrate=False)
    try:
        with store.read() as conn:
            entries = cache.all_entries(conn)
    except MlcdError as exc:
        report.problems.append(Problem("run cache", exc.message, exc.hint or ""))
        return
    finally:
        store.dispose()
    try:
        stages = load_snapshot(root, use_cache=False).stages
    except MlcdError:
        stages = {}
    for entry in entries:
        spec = stages.get(str(entry.get("stage")))
        uncached = {o.path for o in spec.outs if not o.cache} if spec else set()
        lost = [
            path
            for path, digest in dict(entry.get("outputs") or {}).items()
            if path not in uncached and _missing(objects, str(digest)) is not None
        ]
        if lost:
            report.problems.append(
                Problem(
                    "run cache",
                    f"run-cache entry {str(entry['fingerprint'])[:12]}… (stage "
                    f"'{entry.get('stage')}') names outputs the object store lacks: "
                    + ", ".join(lost[:3]),
                    "'mlcd pull' brings them back from a remote; otherwise the stage simply "
                    "runs again next time instead of being restored",
                )
            )
    report.checked["run-cache entries"] = len(entries)
