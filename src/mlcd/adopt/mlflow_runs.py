"""Writing MLflow runs into mlcd's store: whole runs per transaction, never half a run.

Identity: an MLflow run keeps its id in mlcd (both are 32 hex characters; any other id is
mapped to a stable UUID-5), and carries the tag ``mlflow.run_id``. A run already present is
skipped, so importing again adds nothing; a run that was still running in MLflow when it was
imported is replaced on the next import (delete and insert in one transaction), so it picks
up what it logged since.

Atomicity: a batch of runs (rows, params, tags, every metric point, artifact records and the
final status) is one transaction. A crash, a kill or a full disk half-way loses at most the
batch in flight, which the next import writes again: nothing is ever half-imported, so
nothing needs completing.

``MLCD_IMPORT_CRASH_AFTER=K`` is a test hook: the process kills itself (SIGKILL) once the
K-th run of this import is written inside its transaction, before the commit.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlcd.adopt.mlflow_source import SourceExperiment, SourceRun
from mlcd.store import Store
from mlcd.store import runs as run_repo
from mlcd.store.runs import ArtifactRef

KIND = "mlflow"
RUN_TAG = "mlflow.run_id"
EXPERIMENT_ID_TAG = "mlflow.experiment_id"
EXPERIMENT_TAG = "mlflow.experiment_name"
CRASH_ENV = "MLCD_IMPORT_CRASH_AFTER"
#: Metric points per transaction: large enough to amortise the commit, small enough that
#: the database's write lock is never held for long.
POINTS_PER_TRANSACTION = 100_000
_IN_CHUNK = 500
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_NAMESPACE = uuid.UUID("0b5f7e0c-34a4-4c8e-9a55-6d1c0de5f10a")
_KEY_MAX = 250


def mlcd_run_id(mlflow_id: str) -> str:
    """The mlcd id of an MLflow run: the same id when it is 32 hex characters."""
    if _HEX_ID.match(mlflow_id):
        return mlflow_id
    return uuid.uuid5(_NAMESPACE, mlflow_id).hex


@dataclass
class PreparedRun:
    """A run read from MLflow with its metric points and stored artifacts, ready to write."""

    source: SourceRun
    experiment: SourceExperiment
    metrics: list[tuple[str, float, int, float]] = field(default_factory=list)
    artifacts: list[ArtifactRef] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The mlcd run id."""
        return mlcd_run_id(self.source.id)


@dataclass
class WriteCounts:
    """What a write did."""

    imported: int = 0
    replaced: int = 0
    skipped: int = 0
    points: int = 0
    artifacts: int = 0

    def add(self, other: WriteCounts) -> None:
        """Accumulate ``other`` into this."""
        self.imported += other.imported
        self.replaced += other.replaced
        self.skipped += other.skipped
        self.points += other.points
        self.artifacts += other.artifacts


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def present(conn: Any, mlflow_ids: Sequence[str]) -> dict[str, str]:
    """Already imported runs among ``mlflow_ids``: ``{mlflow id: mlcd status}``."""
    from sqlalchemy import select

    from mlcd.store.tables import run_tags, runs

    by_mlcd = {mlcd_run_id(i): i for i in mlflow_ids}
    found: dict[str, str] = {}
    for chunk in _chunks(list(by_mlcd)):
        stmt = (
            select(runs.c.id, runs.c.status)
            .join(run_tags, (run_tags.c.run_id == runs.c.id) & (run_tags.c.key == RUN_TAG))
            .where(runs.c.id.in_(chunk))
        )
        for run_id, status in conn.execute(stmt):
            found[by_mlcd[run_id]] = status
    return found


def _existing_ids(conn: Any, ids: Sequence[str]) -> set[str]:
    from sqlalchemy import select

    from mlcd.store.tables import runs

    found: set[str] = set()
    for chunk in _chunks(list(dict.fromkeys(ids))):
        found.update(r for (r,) in conn.execute(select(runs.c.id).where(runs.c.id.in_(chunk))))
    return found


def needs_import(run: SourceRun, status: str | None) -> bool:
    """Whether a run must be written: absent, or imported while it was still running."""
    if status is None:
        return True
    return status == "running" and run.status != "running"


def batches(
    runs: Sequence[PreparedRun], points: int = POINTS_PER_TRANSACTION
) -> list[list[PreparedRun]]:
    """Split runs into transactions of about ``points`` metric points each."""
    out: list[list[PreparedRun]] = []
    current: list[PreparedRun] = []
    size = 0
    for run in runs:
        if current and size + len(run.metrics) > points:
            out.append(current)
            current, size = [], 0
        current.append(run)
        size += len(run.metrics)
    if current:
        out.append(current)
    return out


def _parents_first(batch: Sequence[PreparedRun]) -> list[PreparedRun]:
    """Order a batch so a parent in it is written before its children."""
    by_id = {r.source.id: r for r in batch}
    done: set[str] = set()
    ordered: list[PreparedRun] = []

    def visit(run: PreparedRun, depth: int = 0) -> None:
        if run.source.id in done:
            return
        done.add(run.source.id)
        parent = run.source.parent_id
        if parent in by_id and depth < 100:
            visit(by_id[parent], depth + 1)
        ordered.append(run)

    for run in batch:
        visit(run)
    return ordered


def _tags(run: PreparedRun) -> dict[str, str]:
    tags = {k[:_KEY_MAX]: v for k, v in run.source.tags.items()}
    tags[RUN_TAG] = run.source.id
    tags[EXPERIMENT_ID_TAG] = run.experiment.id
    tags[EXPERIMENT_TAG] = run.experiment.name
    return tags


class RunWriter:
    """Writes prepared runs into one mlcd store, a batch per transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.written = 0
        crash = os.environ.get(CRASH_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else None

    def write(self, batch: Sequence[PreparedRun]) -> WriteCounts:
        """Write ``batch`` in one transaction (runs that appeared meanwhile are skipped)."""
        ordered = _parents_first(batch)
        counts = self.store.transact(lambda conn: self._write(conn, ordered))
        self.written += counts.imported
        return counts

    def _write(self, conn: Any, batch: Sequence[PreparedRun]) -> WriteCounts:
        from sqlalchemy import update

        from mlcd.store.tables import runs

        counts = WriteCounts()
        status = present(conn, [r.source.id for r in batch])
        # an mlcd run of the same id that did not come from MLflow: never overwritten
        clash = _existing_ids(conn, [r.id for r in batch if r.source.id not in status])
        parents = {r.source.parent_id for r in batch if r.source.parent_id}
        known = _existing_ids(conn, [mlcd_run_id(p) for p in parents if p])
        for run in batch:
            source = run.source
            before = status.get(source.id)
            if run.id in clash or not needs_import(source, before):
                counts.skipped += 1
                continue
            if before is not None:
                run_repo.delete_run(conn, run.id)
                counts.replaced += 1
            parent = mlcd_run_id(source.parent_id) if source.parent_id else None
            run_repo.create_run(
                conn,
                run_id=run.id,
                name=(source.name or "")[:_KEY_MAX] or None,
                kind=KIND,
                parent_id=parent if parent in known else None,
                git_commit=(source.tags.get("mlflow.source.git.commit") or "")[:64] or None,
                user=(source.user or "")[:_KEY_MAX] or None,
                started_at=source.started_at,
            )
            known.add(run.id)
            if source.params:
                run_repo.log_params(conn, run.id, source.params)
            run_repo.set_tags(conn, run.id, _tags(run))
            run_repo.log_metric_rows(conn, run.id, run.metrics)
            run_repo.add_artifacts(conn, run.id, run.artifacts)
            # The run ends when MLflow says it did (runs.end_run would stamp the import time).
            ended = source.ended_at if source.status != "running" else None
            conn.execute(
                update(runs)
                .where(runs.c.id == run.id)
                .values(status=source.status, ended_at=ended, heartbeat_at=ended)
            )
            counts.imported += 1
            counts.points += len(run.metrics)
            counts.artifacts += len(run.artifacts)
            if (
                self._crash_after is not None
                and self.written + counts.imported >= self._crash_after
            ):
                os.kill(os.getpid(), signal.SIGKILL)  # the test hook: die before the commit
        return counts


def link_parents(store: Store) -> int:
    """Point imported runs at their parent once it is imported too; returns how many."""
    from sqlalchemy import select, update

    from mlcd.store.tables import run_tags, runs

    def work(conn: Any) -> int:
        stmt = (
            select(runs.c.id, run_tags.c.value)
            .join(run_tags, run_tags.c.run_id == runs.c.id)
            .where(
                runs.c.kind == KIND,
                runs.c.parent_id.is_(None),
                run_tags.c.key == "mlflow.parentRunId",
            )
        )
        orphans = {run_id: mlcd_run_id(str(parent)) for run_id, parent in conn.execute(stmt)}
        if not orphans:
            return 0
        known = _existing_ids(conn, list(orphans.values()))
        linked = 0
        for run_id, parent in orphans.items():
            if parent in known and parent != run_id:
                conn.execute(update(runs).where(runs.c.id == run_id).values(parent_id=parent))
                linked += 1
        return linked

    return store.transact(work)
