"""The experiment queue: ``exp run --queue``, ``exp start -j N`` and ``exp queue ...``.

A queued experiment is a row of the metadata store (its ``-S`` settings, name and the git
commit it was queued on), so the queue works the same on SQLite and PostgreSQL, and workers on
several machines can share a PostgreSQL queue. ``start_workers`` runs N worker processes
(``mlcd exp worker``, see ``experiments.worker``) and waits for them.

The worker runs the work tree as it is when the experiment starts (like ``exp run``); the commit
it was queued on is kept in the entry and, if ``HEAD`` moved since, the log says so.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import NotFound, UsageError

if TYPE_CHECKING:
    from mlcd.pipeline.plan import Services


def name_taken(store: Any, name: str) -> bool:
    """Whether a run is tagged as the experiment ``name`` (``store``: a ``Store`` or the
    SQLite fast path's ``LiteStore``)."""
    from mlcd.experiments.tags import TAG_NAME

    with store.read() as conn:
        return _tagged(conn, name, TAG_NAME)


def _tagged(conn: Any, name: str, tag: str) -> bool:
    from mlcd.store.lite import LiteConn, run_tagged

    if isinstance(conn, LiteConn):
        return run_tagged(conn, tag, name)
    from sqlalchemy import select

    from mlcd.store.tables import run_tags

    found = conn.execute(
        select(run_tags.c.run_id).where(run_tags.c.key == tag, run_tags.c.value == name).limit(1)
    ).first()
    return found is not None


def _check_name(store: Any, name: str) -> None:
    from mlcd.experiments.tags import TAG_NAME
    from mlcd.store.lite import queue_repository

    with store.read() as conn:
        taken = queue_repository(conn).name_queued(conn, name) or _tagged(conn, name, TAG_NAME)
    if taken:
        raise UsageError(
            f"an experiment named '{name}' exists already",
            hint="pick another name with -n, or remove it: mlcd exp remove " + name,
        )


def enqueue_experiment(
    root: Path,
    services: Services,
    settings: Sequence[str] = (),
    name: str | None = None,
    jobs: int | None = None,
    executor: str = "local",
) -> dict[str, Any]:
    """Store an experiment in the queue instead of running it; returns its entry.

    Raises:
        UsageError: a malformed ``-S``, or a name already taken; nothing is queued.
        ConfigError: the pipeline is invalid.
    """
    return enqueue_to_store(root, services.store, settings, name, jobs, executor)


def _head(root: Path) -> str | None:
    """The commit ``HEAD`` names (None outside git): one ``git rev-parse``, no status."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "-q", "--verify", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def open_queue_store(start: str | Path = ".") -> tuple[Path, Any] | None:
    """``(root, store)`` on the embedded store's fast path (stdlib ``sqlite3``, no SQLAlchemy
    or pydantic), when ``mlcd.yaml`` is unchanged since its last full check and its store is
    a SQLite file at the current schema; else None: open the ``Project`` instead."""
    import os

    from mlcd.errors import ConfigError
    from mlcd.layout import find_root, validated_settings
    from mlcd.store import lite

    try:
        root = find_root(start)
    except ConfigError:
        return None  # the project opens the usual way, and says what is wrong
    known = None if os.environ.get("MLCD_REMOTE") else validated_settings(root)
    if known is None:
        return None
    store = lite.open_fast(os.environ.get("MLCD_STORE") or known["store"], root)
    return None if store is None else (root, store)


def enqueue_to_store(
    root: Path,
    store: Any,
    settings: Sequence[str] = (),
    name: str | None = None,
    jobs: int | None = None,
    executor: str = "local",
) -> dict[str, Any]:
    """:func:`enqueue_experiment` with the metadata store alone (``mlcd exp run --queue``):
    the ``-S`` settings are checked against the pipeline (from its snapshot cache when the
    files are unchanged) and one row is inserted; no object store, no ``git status``."""
    import uuid

    from mlcd.experiments.overrides import parse_overrides
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.store.lite import LiteConn, queue_entry, queue_repository

    snapshot = load_snapshot(root)
    parse_overrides(settings, snapshot.params_file)  # refuse a bad -S now, not in the worker
    entry_id = uuid.uuid4().hex
    name = name or f"exp-{entry_id[:8]}"
    _check_name(store, name)
    base = _head(root)
    options = {"jobs": jobs, "executor": executor}

    def work(conn: Any) -> dict[str, Any]:
        queue_repository(conn).enqueue(
            conn, name=name, settings=settings, base=base, options=options, entry_id=entry_id
        )
        if isinstance(conn, LiteConn):
            return queue_entry(conn, entry_id)
        from mlcd.store import queue

        return queue.get(conn, entry_id)

    return store.transact(work)


def worker_command(sweep_id: str | None = None) -> list[str]:
    """The command line of one worker process."""
    command = [sys.executable, "-m", "mlcd.cli.main", "exp", "worker"]
    return command + (["--sweep", sweep_id] if sweep_id else [])


def start_workers(
    root: Path, services: Services, workers: int, sweep_id: str | None = None
) -> dict[str, Any]:
    """Run ``workers`` worker processes on the queue (one sweep's entries, if given) and wait.

    Returns what the queue's entries (those queued when it started, and any requeued) became.

    Raises:
        UsageError: ``workers`` below 1, or nothing is queued.
    """
    from mlcd.experiments.worker import STALE_S
    from mlcd.store import queue

    if workers < 1:
        raise UsageError(f"-j must be at least 1 (got {workers})")
    services.store.transact(lambda conn: queue.recover(conn, STALE_S))
    with services.store.read() as conn:
        waiting = queue.entries(conn, ("queued",), sweep_id)
    if not waiting:
        raise UsageError(
            "the queue is empty: there is no experiment to start",
            hint="queue one with: mlcd exp run -S KEY=VALUE --queue (see: mlcd exp queue list)",
        )
    processes = [
        subprocess.Popen(worker_command(sweep_id), cwd=root, stdout=subprocess.DEVNULL)
        for _ in range(min(workers, len(waiting)))
    ]
    try:
        # Poll every worker rather than wait() on one: a worker killed meanwhile must be reaped
        # at once, or it stays a zombie whose pid looks alive to the others' recovery.
        while [p for p in processes if p.poll() is None]:  # a list: poll (reap) every one
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    ids = [e["id"] for e in waiting]
    with services.store.read() as conn:
        ended = [e for e in queue.entries(conn, sweep_id=sweep_id) if e["id"] in set(ids)]
    if sweep_id is None:  # 'exp start' on trials queued by 'exp sweep --queue'
        _finish_sweeps(services, {e["sweep_id"] for e in ended if e.get("sweep_id")})
    counts: dict[str, int] = {}
    for entry in ended:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return {
        "workers": len(processes),
        "worker_exit_codes": [p.returncode for p in processes],
        "counts": counts,
        "entries": [entry_view(e) for e in ended],
    }


def _finish_sweeps(services: Services, sweep_ids: set[str]) -> None:
    """End the parent run of each sweep none of whose trials is queued or running any more."""
    from mlcd.experiments.sweep import finish_sweep
    from mlcd.store import queue, runs

    for sweep_id in sorted(sweep_ids):
        with services.store.read() as conn:
            waiting = queue.entries(conn, ("queued", "running"), sweep_id)
            status = runs.get_run(conn, sweep_id)["status"]
        if not waiting and status == "running":
            finish_sweep(services, sweep_id)


def entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as ``exp queue list --json`` shows it."""
    keys = (
        "id", "name", "status", "kind", "settings", "base", "sweep_id", "trial", "attempts",
        "worker", "created_at", "started_at", "ended_at", "run_id", "log_path", "error",
    )  # fmt: skip
    return {k: entry.get(k) for k in keys}


def list_queue(services: Services, all_entries: bool = False) -> list[dict[str, Any]]:
    """The queued and running entries (every entry with ``all_entries``), oldest first."""
    from mlcd.store import queue

    statuses = None if all_entries else ("queued", "running")
    with services.store.read() as conn:
        return [entry_view(e) for e in queue.entries(conn, statuses)]


def find_entry(services: Services, ref: str) -> dict[str, Any]:
    """An entry by id, id prefix or name.

    Raises:
        NotFound: no such entry.
    """
    from mlcd.store import queue

    with services.store.read() as conn:
        return queue.get(conn, ref)


def entry_log(services: Services, ref: str) -> tuple[dict[str, Any], str]:
    """An entry and the text of its log.

    Raises:
        NotFound: no such entry, or no log (not started yet, or written on another host).
    """
    entry = find_entry(services, ref)
    path = entry.get("log_path")
    if not path:
        raise NotFound(
            f"experiment {entry['name']} has no log yet (status {entry['status']})",
            hint="a log is written once a worker starts it: mlcd exp start",
        )
    if not Path(path).is_file():
        raise NotFound(
            f"the log of {entry['name']} is not on this machine ({path}, worker "
            f"{entry.get('worker') or '?'})",
            hint="read it on the worker's host",
        )
    return entry, Path(path).read_text(encoding="utf-8", errors="replace")


def kill_entry(services: Services, ref: str) -> dict[str, Any]:
    """Kill a queued entry (it will not run) or a running one (its worker stops it).

    Raises:
        NotFound: no such entry.
        UsageError: the entry has ended already.
    """
    from mlcd.store import queue

    entry = find_entry(services, ref)
    if entry["status"] not in ("queued", "running"):
        raise UsageError(
            f"experiment {entry['name']} is {entry['status']} already: nothing to kill",
            hint="remove it from the list with: mlcd exp queue remove " + entry["id"][:12],
        )
    status = services.store.transact(lambda conn: queue.request_kill(conn, entry["id"]))
    return {**entry_view(entry), "status": status, "kill_requested": True}


def remove_entries(
    services: Services, refs: Sequence[str], all_entries: bool = False
) -> list[dict[str, Any]]:
    """Delete entries that are not running (every such entry with ``all_entries``).

    Raises:
        NotFound: an unknown reference (nothing is removed).
        UsageError: a running entry (kill it first), or neither refs nor ``all_entries``.
    """
    from mlcd.store import queue

    if not refs and not all_entries:
        raise UsageError("name the entries to remove, or pass --all")
    with services.store.read() as conn:
        chosen = queue.entries(conn) if all_entries else [queue.get(conn, r) for r in refs]
    running = [e for e in chosen if e["status"] == "running"]
    if running and not all_entries:
        raise UsageError(
            f"experiment {running[0]['name']} is running",
            hint="stop it first: mlcd exp queue kill " + running[0]["id"][:12],
        )
    removable = [e for e in chosen if e["status"] != "running"]
    services.store.transact(lambda conn: queue.remove(conn, [e["id"] for e in removable]))
    return [entry_view(e) for e in removable]
