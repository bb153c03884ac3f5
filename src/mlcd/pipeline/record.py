"""RunRecord: what a pipeline run writes to the metadata store (run, stages, lineage, cache)."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.pipeline.fingerprint import flatten

if TYPE_CHECKING:
    from mlcd.store import Store


@dataclass(frozen=True)
class StageRecord:
    """One stage's part of a run, as stored."""

    stage: str
    outcome: str  # ran | cached | skipped | failed | blocked
    reason: str
    fingerprint: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    log_digest: str | None = None
    log_path: str | None = None
    error: str | None = None
    deps: Mapping[str, str | None] | None = None
    outs: Mapping[str, str] | None = None
    metrics_files: tuple[str, ...] = ()
    sizes: Mapping[str, int] | None = None


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git work tree holding ``root``; ``(None, None)`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return commit.stdout.strip() or None, dirty


def _user() -> str | None:
    try:
        return os.environ.get("MLCD_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return None


def flat_params(params: Mapping[str, Mapping[str, Any]], default_file: str) -> dict[str, Any]:
    """Params as flat run params: ``train.lr``; keys of another file get ``file:`` in front."""
    flat: dict[str, Any] = {}
    for file, values in params.items():
        prefix = "" if file == default_file else f"{file}:"
        for key, value in values.items():
            if isinstance(value, Mapping) and value:
                flat.update({prefix + k: v for k, v in flatten(value, key).items()})
            else:
                flat[prefix + key] = value
    return flat


def _mark_dead_runs_killed(conn: Any) -> None:
    """End as ``killed`` the pipeline runs of this host whose process is gone (SIGKILL, crash)."""
    from sqlalchemy import select

    from mlcd.store import runs
    from mlcd.store.locks import process_alive
    from mlcd.store.tables import runs as runs_table

    host = socket.gethostname()
    running = conn.execute(
        select(runs_table.c.id).where(
            runs_table.c.kind == "pipeline", runs_table.c.status == "running"
        )
    ).scalars()
    for run_id in list(running):
        tags = runs.tags_of(conn, run_id)
        pid = tags.get("mlcd.pid")
        if tags.get("mlcd.host") == host and pid and pid.isdigit() and not process_alive(int(pid)):
            runs.end_run(conn, run_id, "killed")


class RunRecord:
    """A pipeline run in the metadata store; every method is one short write transaction.

    Args:
        store: the metadata store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.run_id: str | None = None

    def start(self, root: Path, targets: tuple[str, ...]) -> str:
        """Insert the running run (git commit, dirty flag, user) and return its id."""
        from mlcd.store import runs

        commit, dirty = git_state(root)

        def work(conn: Any) -> str:
            _mark_dead_runs_killed(conn)
            run_id = runs.create_run(
                conn, kind="pipeline", git_commit=commit, git_dirty=dirty, user=_user()
            )
            tags = {"mlcd.host": socket.gethostname(), "mlcd.pid": os.getpid()}
            if targets:
                tags["mlcd.targets"] = " ".join(targets)
            runs.set_tags(conn, run_id, tags)
            return run_id

        self.run_id = self.store.transact(work)
        return self.run_id

    def stage(self, record: StageRecord, cache_metrics: Mapping[str, Any] | None = None) -> None:
        """Store one stage's outcome and lineage; for a stage that ran, its run-cache entry."""
        from mlcd.store import cache, runs

        assert self.run_id is not None
        run_id = self.run_id
        duration = (
            record.ended_at - record.started_at
            if record.started_at is not None and record.ended_at is not None
            else None
        )
        refs = []
        for path, digest in (record.deps or {}).items():
            if digest is not None:
                refs.append(runs.ArtifactRef("input", path, digest, None, record.stage))
        sizes = record.sizes or {}
        for path, digest in (record.outs or {}).items():
            role = "metrics" if path in record.metrics_files else "output"
            refs.append(runs.ArtifactRef(role, path, digest, sizes.get(path), record.stage))
        if record.log_digest:
            log_path = record.log_path or f"{record.stage}.log"
            refs.append(runs.ArtifactRef("log", log_path, record.log_digest, None, record.stage))

        def work(conn: Any) -> None:
            runs.record_stage(
                conn,
                run_id,
                record.stage,
                fingerprint=record.fingerprint,
                outcome=record.outcome,
                reason=record.reason,
                started_at=record.started_at,
                ended_at=record.ended_at,
                duration_s=duration,
                log_digest=record.log_digest,
                error=record.error,
            )
            runs.add_artifacts(conn, run_id, refs)
            if record.outcome == "ran" and record.fingerprint and record.outs is not None:
                cache.put_entry(
                    conn,
                    record.fingerprint,
                    record.stage,
                    dict(record.outs),
                    dict(cache_metrics or {}),
                    run_id,
                )

        self.store.transact(work)

    def finish(self, status: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Log the params and metrics of the pipeline's stages and end the run."""
        from mlcd.store import runs

        assert self.run_id is not None
        run_id = self.run_id

        def work(conn: Any) -> None:
            if params:
                runs.log_params(conn, run_id, params)
            if metrics:
                runs.log_metrics(
                    conn, run_id, [runs.MetricPoint(k, float(v)) for k, v in metrics.items()]
                )
            runs.end_run(conn, run_id, status)

        self.store.transact(work)


def record_data_add(
    store: Store,
    root: Path,
    added: list[tuple[str, str, int]],
    git: tuple[str | None, bool | None] | None = None,
) -> str:
    """Record ``mlcd data add`` as a finished run (kind ``data``), one output per path.

    The record is what keeps tracked data's objects from ``mlcd gc`` (they are referenced),
    and it says who added which version when.

    Args:
        store: the metadata store.
        root: the project root (for the git state, unless ``git`` is given).
        added: ``(path, digest, size)`` of each tracked path.
        git: ``(commit, dirty)`` if already known.

    Returns:
        The run id.
    """
    from mlcd.store import runs

    commit, dirty = git if git is not None else git_state(root)

    def work(conn: Any) -> str:
        run_id = runs.create_run(
            conn, name="data add", kind="data", git_commit=commit, git_dirty=dirty, user=_user()
        )
        runs.add_artifacts(
            conn, run_id, [runs.ArtifactRef("output", p, d, size) for p, d, size in added]
        )
        runs.end_run(conn, run_id, "finished")
        return run_id

    return store.transact(work)
