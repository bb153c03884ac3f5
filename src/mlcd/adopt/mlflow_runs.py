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
transaction holding the K-th run of this import has written everything, before its commit.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlcd.adopt.mlflow_source import Row, SourceExperiment, SourceRun
from mlcd.store import Store
from mlcd.store import runs as run_repo
from mlcd.store.runs import ArtifactRef

KIND = "mlflow"
RUN_TAG = "mlflow.run_id"
EXPERIMENT_ID_TAG = "mlflow.experiment_id"
EXPERIMENT_TAG = "mlflow.experiment_name"
CRASH_ENV = "MLCD_IMPORT_CRASH_AFTER"
#: ``MLCD_IMPORT_BATCH_RUNS=N``: at most N runs per transaction (default: as many as fit
#: ``POINTS_PER_TRANSACTION``); smaller batches commit more often.
BATCH_ENV = "MLCD_IMPORT_BATCH_RUNS"
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
    """A run read from MLflow, its rows ready to insert (built by the reader, so the writer
    only hands lists to the database).

    ``metrics`` and ``latest`` are ``(mlcd run id, key, value, step, timestamp)`` rows;
    ``folders`` are ``(artifact path prefix, local folder)`` still to be stored, and
    ``artifacts`` the records of files already stored.
    """

    source: SourceRun
    experiment: SourceExperiment
    metrics: list[Row] = field(default_factory=list)
    latest: list[Row] = field(default_factory=list)
    folders: list[tuple[str, str]] = field(default_factory=list)
    artifacts: list[ArtifactRef] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The mlcd run id."""
        return mlcd_run_id(self.source.id)

    @classmethod
    def build(
        cls,
        source: SourceRun,
        experiment: SourceExperiment,
        points: list[Row],
        latest: list[Row],
        folders: Sequence[tuple[str, str]] = (),
    ) -> PreparedRun:
        """A run with its points and latest points (``MlflowSource.metric_rows``' rows, which
        carry MLflow's run id: the mlcd id unless that id is not 32 hex characters)."""
        run_id = mlcd_run_id(source.id)
        if run_id != source.id:
            points = [(run_id, k, v, s, t) for _, k, v, s, t in points]
            latest = [(run_id, k, v, s, t) for _, k, v, s, t in latest]
        return cls(source, experiment, points, latest, list(folders))


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
    limit = os.environ.get(BATCH_ENV, "")
    most = max(1, int(limit)) if limit.isdigit() else None
    out: list[list[PreparedRun]] = []
    current: list[PreparedRun] = []
    size = 0
    for run in runs:
        if current and (size + len(run.metrics) > points or len(current) == most):
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
        if conn.dialect.name == "sqlite":
            # A 10,000-run import inserts 10 million index entries: a page cache of 256 MiB
            # (instead of 2 MiB) keeps the index's hot pages in memory (this connection only).
            conn.exec_driver_sql("PRAGMA cache_size = -262144")
        counts = WriteCounts()
        status = present(conn, [r.source.id for r in batch])
        # an mlcd run of the same id that did not come from MLflow: never overwritten
        clash = _existing_ids(conn, [r.id for r in batch if r.source.id not in status])
        parents = {r.source.parent_id for r in batch if r.source.parent_id}
        known = _existing_ids(conn, [mlcd_run_id(p) for p in parents if p])
        chosen: list[PreparedRun] = []
        for run in batch:
            before = status.get(run.source.id)
            if run.id in clash or not needs_import(run.source, before):
                counts.skipped += 1
                continue
            if before is not None:
                run_repo.delete_run(conn, run.id)
                counts.replaced += 1
            chosen.append(run)
        rows = []
        for run in chosen:
            parent = mlcd_run_id(run.source.parent_id) if run.source.parent_id else None
            rows.append(_run_row(run, parent if parent in known else None))
            known.add(run.id)
        if rows:
            from mlcd.store.tables import runs

            conn.execute(runs.insert(), rows)
        _insert_records(conn, chosen)
        if self._crash_after is not None and self.written + len(chosen) >= self._crash_after:
            os.kill(os.getpid(), signal.SIGKILL)  # the test hook: die before the commit
        counts.imported = len(chosen)
        counts.points = sum(len(r.metrics) for r in chosen)
        counts.artifacts = sum(len(r.artifacts) for r in chosen)
        return counts


def _number(value: str) -> float | None:
    """A param's value as a finite number, when it is one (as ``runs.log_params`` stores it)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _run_row(run: PreparedRun, parent: str | None) -> dict[str, Any]:
    """The ``runs`` row ``runs.create_run`` + ``runs.end_run`` would write, but ended when
    MLflow says the run ended (``end_run`` stamps the current time)."""
    source = run.source
    ended = source.ended_at if source.status != "running" else None
    return {
        "id": run.id,
        "name": (source.name or "")[:_KEY_MAX] or None,
        "kind": KIND,
        "status": source.status,
        "parent_id": parent,
        "started_at": source.started_at if source.started_at is not None else time.time(),
        "ended_at": ended,
        "git_commit": (source.tags.get("mlflow.source.git.commit") or "")[:64] or None,
        "git_dirty": None,
        "user": (source.user or "")[:_KEY_MAX] or None,
        "heartbeat_at": ended,
    }


def _insert_records(conn: Any, chosen: Sequence[PreparedRun]) -> None:
    """Params, tags, metric points, latest metrics and artifacts of new runs, one statement
    per table for the whole batch.

    The rows are those ``runs.log_params``/``set_tags``/``log_metric_rows``/``add_artifacts``
    write; plain inserts instead of their per-run upserts, because these runs are new in this
    transaction: at 10,000 runs the upserts' statement building alone took 40 s.
    """
    from mlcd.store.tables import run_artifacts, run_latest_metrics, run_params, run_tags

    params = [
        {"run_id": r.id, "key": k, "value": v, "value_num": _number(v)}
        for r in chosen
        for k, v in r.source.params.items()
    ]
    tags = [{"run_id": r.id, "key": k, "value": v} for r in chosen for k, v in _tags(r).items()]
    latest = [
        {"run_id": i, "key": k, "value": v, "step": st, "timestamp": t}
        for r in chosen
        for i, k, v, st, t in r.latest
    ]
    artifacts = [
        {
            "run_id": r.id,
            "stage": a.stage,
            "role": a.role,
            "path": a.path,
            "digest": a.digest,
            "size": a.size,
        }
        for r in chosen
        for a in r.artifacts
    ]
    for table, rows in (
        (run_params, params),
        (run_tags, tags),
        (run_latest_metrics, latest),
        (run_artifacts, artifacts),
    ):
        if rows:
            conn.execute(table.insert(), rows)
    points: list[Row] = []
    for run in chosen:
        points.extend(run.metrics)
    if not points:
        return
    # Straight to the driver, as runs.log_metric_rows does (half the cost of SQLAlchemy's
    # per-row parameter processing).
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:
        from mlcd.store.tables import run_metrics

        conn.execute(
            run_metrics.insert(),
            [
                {"run_id": i, "key": k, "value": v, "step": s, "timestamp": t}
                for i, k, v, s, t in points
            ],
        )
        return
    conn.exec_driver_sql(
        "INSERT INTO run_metrics (run_id, key, value, step, timestamp) "
        f"VALUES ({', '.join([mark] * 5)})",
        points,
    )


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
