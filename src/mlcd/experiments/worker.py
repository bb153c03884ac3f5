"""A queue worker: claims queued experiments one at a time and runs each in its own workspace.

``mlcd exp start -j N`` starts N worker processes (``mlcd exp worker``), each running
:func:`work`. A worker heartbeats its entry every ``HEARTBEAT_S`` seconds from a thread; the
heartbeat also carries ``mlcd exp queue kill``: the worker interrupts its own run (SIGINT, so
the pipeline stops its commands and marks the run killed) and takes the next entry.

Before each claim a worker recovers entries whose worker is gone (see ``store.queue.recover``):
a dead pid on this host is seen at once, a worker on another host once its heartbeat is older
than ``STALE_S``. A worker whose queue is empty waits while other workers still run entries
(one of them may die and its entry come back), and leaves when nothing is queued or running.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from mlcd.errors import MlcdError
from mlcd.layout import STATE_DIR
from mlcd.pipeline.plan import Reporter, Services, StageResult

HEARTBEAT_S = float(os.environ.get("MLCD_EXP_HEARTBEAT_S", "2"))
#: A running entry whose heartbeat is older than this is taken as dead (another host's worker).
STALE_S = float(os.environ.get("MLCD_EXP_STALE_S", "60"))
POLL_S = 0.5
LOGS = "exp/logs"


class _LogReporter(Reporter):
    """Writes each stage's progress, and the log of every stage that ran, to the entry's log."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def planned(self, stages: list[str]) -> None:
        self._say(f"stages: {', '.join(stages)}")

    def started(self, stage: str, action: str) -> None:
        self._say(f"{stage}: {action}")

    def finished(self, result: StageResult) -> None:
        self._say(f"{result.stage}: {result.outcome} ({result.reason}) in {result.duration_s:.2f}s")
        path = Path(result.log_path) if result.log_path else None
        if path is not None and path.is_absolute() and path.is_file():
            self.out.write(path.read_text(encoding="utf-8", errors="replace"))
        elif result.log_tail:
            self.out.write(result.log_tail + "\n")
        if result.error:
            self._say(f"{result.stage}: error: {result.error}")

    def _say(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        self.out.write(f"[{stamp}] {line}\n")
        self.out.flush()


def log_path(root: Path, entry_id: str) -> Path:
    """Where the worker writes an entry's log: ``.mlcd/exp/logs/<id>.log``."""
    return root / STATE_DIR / LOGS / f"{entry_id}.log"


class _Heartbeat:
    """Refreshes the entry's heartbeat; interrupts this process when a kill is requested or the
    entry was taken away (requeued after a missed heartbeat)."""

    def __init__(self, services: Services, entry_id: str, worker: str) -> None:
        self.services, self.entry_id, self.worker = services, entry_id, worker
        #: called at each beat; a reason it returns stops the run (a pruned trial)
        self.check: Callable[[], str | None] | None = None
        self.stop = threading.Event()
        self.reason: str | None = None
        self.thread = threading.Thread(target=self._loop, name="mlcd-exp-heartbeat", daemon=True)

    def _loop(self) -> None:
        from mlcd.store import queue

        while not self.stop.wait(HEARTBEAT_S):
            try:
                state = self.services.store.transact(
                    lambda conn: queue.heartbeat(conn, self.entry_id, self.worker)
                )
            except MlcdError:  # a transient store error: the next beat retries
                continue
            if state is None or state:
                self.reason = "kill requested" if state else "entry taken back by the queue"
                os.kill(os.getpid(), signal.SIGINT)
                return
            try:
                reason = self.check() if self.check is not None else None
            except Exception as exc:  # pruning is advice: a failure to judge never stops a run
                print(f"pruning check failed: {exc}", file=sys.stderr, flush=True)
                reason = None
            if reason:
                self.reason = reason
                os.kill(os.getpid(), signal.SIGINT)
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=HEARTBEAT_S + 5)


def _redirected(out: TextIO) -> tuple[int, int]:
    """Point this process's stdout and stderr (file descriptors, so stage commands too) at
    ``out``; returns the saved descriptors."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    return saved


def _restore(saved: tuple[int, int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])


def run_entry(root: Path, services: Services, entry: dict[str, Any], worker: str) -> dict[str, Any]:
    """Run one claimed entry to its end; returns the entry's final fields."""
    from mlcd.experiments import sweep as sweeps
    from mlcd.experiments.run import run_experiment
    from mlcd.pipeline.record import git_state
    from mlcd.store import queue

    options = entry.get("options") or {}
    path = log_path(root, entry["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    services.store.transact(lambda c: queue.update_entry(c, entry["id"], log_path=str(path)))
    status, run_id, error = "failed", None, None
    trial: Any = None
    with path.open("a", encoding="utf-8") as out:
        out.write(f"--- {entry['name']} attempt {entry['attempts']} by worker {worker}\n")
        head = git_state(root)[0]
        if entry.get("base") and head != entry["base"]:
            out.write(
                f"note: queued on commit {entry['base'][:12]}, HEAD is now {(head or '?')[:12]}:"
                " the work tree as it is now runs\n"
            )
        out.flush()
        deadline = options.get("deadline")
        if deadline is not None and time.time() > float(deadline):
            services.store.transact(
                lambda c: queue.skip_queued(c, entry["sweep_id"], "the sweep's time ran out")
            )
            services.store.transact(
                lambda c: queue.finish(c, entry["id"], worker, "skipped", None, "out of time")
            )
            out.write("skipped: the sweep's --timeout has passed\n")
            return {"id": entry["id"], "name": entry["name"], "status": "skipped"}
        settings = list(entry["settings"])
        tags = {}
        if entry.get("sweep_id"):
            tags[sweeps.TAG_SWEEP_OF] = entry["sweep_id"]
        saved = _redirected(out)
        heartbeat = _Heartbeat(services, entry["id"], worker)
        try:
            with heartbeat:
                if entry["kind"] == "optuna":
                    trial, asked = sweeps.ask(services.store, entry["sweep_id"], options)
                    settings += asked
                    if options.get("prune", True):
                        heartbeat.check = sweeps.Pruning(services, entry["sweep_id"], trial)
                    number = trial.number
                    services.store.transact(
                        lambda c: queue.update_entry(c, entry["id"], trial=number)
                    )
                    entry["trial"] = number
                if entry.get("trial") is not None:
                    tags[sweeps.TAG_TRIAL] = str(entry["trial"])
                print(f"settings: {' '.join(settings) or '(none)'}", flush=True)
                done = run_experiment(
                    root,
                    services,
                    settings,
                    entry["name"],
                    jobs=options.get("jobs"),
                    reporter=_LogReporter(out),
                    exp_id=entry["id"][:12],
                    parent_id=entry.get("sweep_id"),
                    executor=options.get("executor") or "local",
                    tags=tags,
                )
            run_id = done.result.run_id
            status = "done" if done.result.ok else "failed"
            if not done.result.ok:
                error = "stage(s) failed: " + ", ".join(
                    s.stage for s in done.result.failed if s.outcome == "failed"
                )
        except KeyboardInterrupt:
            status, error = "killed", heartbeat.reason or "interrupted"
            if error.startswith("pruned"):
                status = "pruned"
        except MlcdError as exc:
            error = str(exc)
        except Exception as exc:  # the worker survives any one experiment's failure
            error = f"{type(exc).__name__}: {exc}"
        finally:
            _restore(saved)
        if trial is not None:
            sweeps.tell(
                services,
                entry["sweep_id"],
                trial,
                run_id if status == "done" else None,
                pruned=status == "pruned",
            )
        out.write(f"--- {status}{': ' + error if error else ''}\n")
    services.store.transact(lambda c: queue.finish(c, entry["id"], worker, status, run_id, error))
    return {"id": entry["id"], "name": entry["name"], "status": status, "run_id": run_id}


def _others_running(services: Services, sweep_id: str | None) -> bool:
    from mlcd.store import queue

    with services.store.read() as conn:
        return bool(queue.entries(conn, ("running",), sweep_id))


def work(root: Path, services: Services, sweep_id: str | None = None) -> list[dict[str, Any]]:
    """Claim and run queued entries (of one sweep, if given) until none is queued or running.

    Returns the entries this worker ended, in order.
    """
    from mlcd.store import queue
    from mlcd.store.locks import owner_id

    worker = owner_id()
    ran: list[dict[str, Any]] = []

    def take(conn: Any) -> dict[str, Any] | None:
        queue.recover(conn, STALE_S)
        return queue.claim(conn, worker, sweep_id)

    while True:
        entry = services.store.transact(take)
        if entry is None:
            if not _others_running(services, sweep_id):
                return ran
            time.sleep(POLL_S)
            continue
        print(f"worker {worker}: {entry['name']} started", file=sys.stderr, flush=True)
        done = run_entry(root, services, entry, worker)
        print(f"worker {worker}: {entry['name']} {done['status']}", file=sys.stderr, flush=True)
        ran.append(done)
