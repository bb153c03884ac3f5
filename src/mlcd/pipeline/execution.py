"""Execution: one ``mlcd run`` that has work to do, scheduling its stages.

For each selected stage, in dependency order and independent stages in parallel:

1. lock the paths it writes (and the produced paths it reads) against other runs;
2. skip it if its fingerprint and outputs match ``mlcd.lock`` (re-checked under the locks:
   another run may have just done the work);
3. else restore its outputs from the object store if the run cache knows its fingerprint;
4. else run its command, store its outputs, and record the fingerprint in the run cache;
5. record the outcome in the metadata store and update ``mlcd.lock`` for that stage.

A failed stage blocks only its dependents; the others finish. Nothing of a failed stage is
recorded as a result: no run-cache entry, no lock entry.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import MlcdError
from mlcd.pipeline.inputs import warm_start_env
from mlcd.pipeline.lockfile import LockEntry, read_lock, update_lock
from mlcd.pipeline.outputs import (
    ensure_gitignored,
    in_git,
    read_metrics,
    remove_outputs,
    restorable,
    restore_outputs,
    store_outputs,
)
from mlcd.pipeline.pathlock import HeldLocks, PathLocks
from mlcd.pipeline.plan import (
    FAILED,
    Reporter,
    RunOptions,
    RunResult,
    Services,
    StageResult,
    forced_stages,
    plan_stages,
)
from mlcd.pipeline.record import RunRecord, StageRecord, flat_params
from mlcd.pipeline.snapshot import Snapshot
from mlcd.pipeline.stage import StageSpec, render_cmd
from mlcd.pipeline.statcache import StatCache
from mlcd.pipeline.status import Digests, StageState, inspect_stage

if TYPE_CHECKING:
    from mlcd.pipeline.executors import Executor

#: Lines of a failed stage's log shown in the error.
LOG_TAIL_LINES = 20


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so running commands are stopped and the run marked killed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Execution:
    """One ``mlcd run`` with work to do: its state while the stages are scheduled.

    Args:
        snapshot: the pipeline as declared.
        services: the metadata and object stores.
        options: targets, force, jobs, executor.
        reporter: receives progress events.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        services: Services,
        options: RunOptions,
        reporter: Reporter,
    ) -> None:
        self.snapshot = snapshot
        self.root = snapshot.root
        self.options = options
        self.reporter = reporter
        self.services = services
        self.dag = snapshot.dag
        self.statcache = StatCache(snapshot.state_dir / "statcache.db")
        self.digests = Digests(self.root, self.statcache)
        self.locks = PathLocks(snapshot.state_dir)
        self.cancel = threading.Event()
        self.jobs = max(1, options.jobs or os.cpu_count() or 1)
        self.params: dict[str, dict[str, dict[str, Any]]] = {}
        self.metrics: dict[str, dict[str, dict[str, Any]]] = {}
        self.record = RunRecord(services.store)
        self.executor: Executor | None = None
        self.order = list(snapshot.stages)
        self.log_dir = snapshot.state_dir / "logs"
        self.forced: frozenset[str] = frozenset()

    def execute(self) -> RunResult:
        """Record a run and bring every selected stage up to date."""
        from mlcd.pipeline.executors import open_executor

        plan = plan_stages(self.snapshot, self.options)
        self.forced = forced_stages(self.snapshot, self.options)
        # a bad name: no run
        self.executor = open_executor(self.options.executor, self.jobs, self.services.objects)
        try:
            run_id = self.record.start(self.root, self.options.targets)
        except BaseException:
            self.executor.close()
            raise
        self.log_dir = self.snapshot.state_dir / "logs" / run_id
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.reporter.planned(plan)
        results: dict[str, StageResult] = {}
        try:
            with _sigterm_as_interrupt():
                self._schedule(plan, results)
        except KeyboardInterrupt:
            self.cancel.set()
            self.executor.cancel()
            self._finish(plan, results, "killed")
            raise
        finally:
            self.executor.close()
            self.statcache.close()
        status = "failed" if any(r.outcome in FAILED for r in results.values()) else "finished"
        self._finish(plan, results, status)
        return RunResult(run_id, [results[name] for name in plan if name in results])

    # ------------------------------------------------------------ scheduling
    def _schedule(self, plan: list[str], results: dict[str, StageResult]) -> None:
        planned = set(plan)
        pending = list(plan)
        running: dict[Future[StageResult], str] = {}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mlcd-stage") as pool:
            try:
                while pending or running:
                    progressed = True
                    while progressed:
                        progressed = False
                        for name in list(pending):
                            ups = self.dag.upstream[name] & planned
                            broken = sorted(
                                u for u in ups if u in results and results[u].outcome in FAILED
                            )
                            if broken:
                                pending.remove(name)
                                results[name] = self._blocked(name, broken)
                                progressed = True
                            elif all(u in results for u in ups) and len(running) < self.jobs:
                                pending.remove(name)
                                running[pool.submit(self._stage, name)] = name
                                progressed = True
                    if not running:
                        # the plan is closed under upstream and ordered: something always
                        # becomes ready, so this would be a scheduling bug, not a hang
                        assert not pending, f"no stage of {pending} can start"
                        continue
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        name = running.pop(future)
                        try:
                            results[name] = future.result()
                        except MlcdError as exc:
                            results[name] = self._crashed(name, exc.message)
                        except Exception as exc:  # a bug must not hide the other stages' results
                            results[name] = self._crashed(name, f"{type(exc).__name__}: {exc}")
                        self.reporter.finished(results[name])
            except BaseException:
                self.cancel.set()
                if self.executor is not None:
                    self.executor.cancel()
                raise

    def _blocked(self, name: str, broken: list[str]) -> StageResult:
        result = StageResult(name, "blocked", f"upstream stage {', '.join(broken)} failed")
        self._record(StageRecord(name, "blocked", result.reason))
        self.reporter.finished(result)
        return result

    def _crashed(self, name: str, message: str) -> StageResult:
        result = StageResult(name, "failed", "error", error=message)
        try:
            self._record(StageRecord(name, "failed", "error", error=message))
        except MlcdError:
            pass  # the store itself may be what failed; the result still reaches the user
        return result

    def _record(self, record: StageRecord, cache_metrics: dict[str, Any] | None = None) -> None:
        self.record.stage(record, cache_metrics)

    # ------------------------------------------------------------ one stage
    def _stage(self, name: str) -> StageResult:
        spec = self.snapshot.stages[name]
        reads = [dep for dep in spec.deps if self.dag.producers_of(dep)]
        held = self.locks.acquire(
            write=spec.produced,
            read=reads,
            owner=f"mlcd run (pid {os.getpid()}, stage '{name}')",
            on_wait=lambda path, holder: self.reporter.waiting(name, path, holder),
            cancel=self.cancel,
        )
        try:
            return self._decide(spec, held)
        finally:
            held.release()

    def _decide(self, spec: StageSpec, held: HeldLocks) -> StageResult:
        started = time.time()
        # Another run may have brought this stage up to date while we waited for its locks.
        self.digests.forget([*spec.deps, *spec.produced])
        lock = read_lock(self.root)
        state = inspect_stage(self.snapshot, spec, self.digests, lock)
        self.params[spec.name] = state.params
        reasons = tuple(r.to_dict() for r in state.reasons)
        forced = spec.name in self.forced
        if not forced and not state.stale:
            entry = lock[spec.name]
            self.metrics[spec.name] = {k: dict(v) for k, v in entry.metrics.items()}
            self._record(
                StageRecord(
                    spec.name,
                    "skipped",
                    "up to date",
                    state.fingerprint,
                    started,
                    time.time(),
                    deps=state.deps,
                    outs=entry.outs,
                    metrics_files=spec.metrics,
                )
            )
            return StageResult(spec.name, "skipped", "up to date", fingerprint=state.fingerprint)
        reason = "; ".join(r.message for r in state.reasons) or "forced (--force)"
        if not forced and not spec.always_run:
            cached = self._restore(spec, state, reason, reasons, started)
            if cached is not None:
                return cached
        return self._execute(spec, state, reason, reasons, held, started)

    def _restore(
        self,
        spec: StageSpec,
        state: StageState,
        reason: str,
        reasons: tuple[dict[str, Any], ...],
        started: float,
    ) -> StageResult | None:
        from mlcd.store import cache

        with self.services.store.read() as conn:
            entry = cache.get_entry(conn, state.fingerprint)
        if entry is None:
            return None
        outputs: dict[str, str] = {p: d for p, d in entry["outputs"].items() if p in spec.produced}
        required = {o.path for o in spec.outs} | set(spec.metrics)
        uncached = {o.path for o in spec.outs if not o.cache}
        if not required <= outputs.keys():
            return None
        if any(state.produced.get(p) != outputs[p] for p in uncached):
            return None  # an uncached out cannot come back from the store
        wanted = {p: d for p, d in outputs.items() if p not in uncached}
        if not restorable(self.services.objects, wanted):
            return None
        self.reporter.started(spec.name, "restoring")
        restored = restore_outputs(
            self.services.objects, self.statcache, self.root, wanted, state.produced
        )
        self.digests.forget(spec.produced)
        metrics = {k: dict(v) for k, v in (entry.get("metrics") or {}).items()}
        self.metrics[spec.name] = metrics
        lock_entry = LockEntry(
            state.fingerprint, spec.cmd, state.deps, state.params, outputs, metrics
        )
        update_lock(self.root, {spec.name: lock_entry}, self.order, self.snapshot.state_dir)
        ended = time.time()
        why = f"restored from cache ({reason})"
        self._record(
            StageRecord(
                spec.name,
                "cached",
                why,
                state.fingerprint,
                started,
                ended,
                deps=state.deps,
                outs=outputs,
                metrics_files=spec.metrics,
            )
        )
        return StageResult(
            spec.name,
            "cached",
            reason,
            ended - started,
            state.fingerprint,
            reasons,
            restored=tuple(restored),
        )

    def _execute(
        self,
        spec: StageSpec,
        state: StageState,
        reason: str,
        reasons: tuple[dict[str, Any], ...],
        held: HeldLocks,
        started: float,
    ) -> StageResult:
        from mlcd.pipeline.executors import Job
        from mlcd.pipeline.executors.scratch import job_inputs
        from mlcd.tracking.autolog import autolog_env

        assert self.executor is not None
        objects = self.services.objects
        self.reporter.started(spec.name, "running")
        remove_outputs(self.root, spec)
        for relative in spec.produced:
            (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        log_relative = log_path.relative_to(self.root).as_posix()
        env = {
            **os.environ,
            **spec.env,
            "MLCD_RUN_ID": self.record.run_id or "",
            "MLCD_STAGE": spec.name,
            "MLCD_PROJECT": str(self.root),
            "MLCD_STORE": self.services.store.url,
            "MLCD_ARTIFACTS": objects.url,
            **warm_start_env(self.root, objects, spec.inputs),
        }
        env.update(autolog_env(env))  # MLCD_AUTOLOG: mlcd's sitecustomize first on PYTHONPATH
        cmd = render_cmd(spec.cmd, state.params)
        if spec.contracts:  # what the stage reads, unless a stage of this pipeline wrote it
            written = {p for s in self.snapshot.stages.values() for p in s.produced}
            refused = self._contracts(spec, "dep", log_path, skip=written)
            if refused is not None:
                return self._refused(spec, state, reason, reasons, refused)
        job = Job(
            spec.name, cmd, str(self.root / spec.wdir), env, str(log_path), tuple(held.fds),
            root=str(self.root), inputs=job_inputs(spec, state.deps, state.produced),
            outputs=spec.produced, resources=spec.resources,
        )  # fmt: skip
        outcome = self.executor.submit(job).result()
        log_digest = str(objects.put_file(log_path)) if log_path.exists() else None

        def failed(message: str) -> StageResult:
            tail = _tail(log_path)
            self._record(
                StageRecord(
                    spec.name,
                    "failed",
                    reason,
                    state.fingerprint,
                    outcome.started_at,
                    outcome.ended_at,
                    log_digest,
                    log_relative,
                    message,
                    deps=state.deps,
                )
            )
            return StageResult(
                spec.name,
                "failed",
                reason,
                outcome.duration_s,
                state.fingerprint,
                reasons,
                error=message,
                log_tail=tail,
                log_path=log_relative,
            )

        if outcome.returncode != 0:
            code = outcome.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            return failed(f"command {how}")
        self.digests.forget(spec.produced)
        missing = [
            p for p in (*(o.path for o in spec.outs), *spec.metrics) if self.digests.of(p) is None
        ]
        if missing:
            return failed(f"the command succeeded but did not write {', '.join(missing)}")
        if spec.contracts:
            refused = self._contracts(spec, "out", log_path)
            if refused is not None:
                log_digest = str(objects.put_file(log_path)) if log_path.exists() else None
                return failed(refused)
        produced = {p: d for p in spec.produced if (d := self.digests.of(p)) is not None}
        uncached = [o.path for o in spec.outs if not o.cache]
        metrics = {m: read_metrics(self.root / m) for m in spec.metrics}
        store_outputs(objects, self.statcache, self.root, produced, skip=uncached)
        sizes = {}
        for path, digest in produced.items():
            if not digest.endswith(".dir"):
                sizes[path] = (self.root / path).stat().st_size
        self.statcache.flush()
        self.metrics[spec.name] = metrics
        self._record(
            StageRecord(
                spec.name,
                "ran",
                reason,
                state.fingerprint,
                outcome.started_at,
                outcome.ended_at,
                log_digest,
                log_relative,
                None,
                deps=state.deps,
                outs=produced,
                metrics_files=spec.metrics,
                sizes=sizes,
            ),
            cache_metrics=metrics,
        )
        lock_entry = LockEntry(
            state.fingerprint, spec.cmd, state.deps, state.params, produced, metrics
        )
        update_lock(self.root, {spec.name: lock_entry}, self.order, self.snapshot.state_dir)
        return StageResult(
            spec.name,
            "ran",
            reason,
            outcome.duration_s,
            state.fingerprint,
            reasons,
            log_path=log_relative,
        )

    def _contracts(
        self, spec: StageSpec, role: str, log_path: Path, skip: set[str] | None = None
    ) -> str | None:
        """Check the stage's data contracts of ``role``; the failure message, or None."""
        from mlcd.pipeline import contracts_check

        reports = contracts_check.check_stage(self.root, spec, role, skip or ())
        if not reports:
            return None
        report = contracts_check.write_reports(self.snapshot.state_dir, spec.name, reports)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write("\n".join(contracts_check.log_lines(reports)) + "\n")
        if all(r.passed for r in reports):
            return None
        return contracts_check.failure_message(reports, report, self.root)

    def _refused(
        self,
        spec: StageSpec,
        state: StageState,
        reason: str,
        reasons: tuple[dict[str, Any], ...],
        message: str,
    ) -> StageResult:
        """A stage not run because the data it reads breaks its contract."""
        import time

        objects = self.services.objects
        log_path = self.log_dir / f"{spec.name}.log"
        log_digest = str(objects.put_file(log_path)) if log_path.exists() else None
        log_relative = log_path.relative_to(self.root).as_posix()
        now = time.time()
        self._record(
            StageRecord(
                spec.name, "failed", reason, state.fingerprint, now, now, log_digest,
                log_relative, message, deps=state.deps,
            )
        )  # fmt: skip
        return StageResult(
            spec.name, "failed", reason, 0.0, state.fingerprint, reasons, error=message,
            log_tail=_tail(log_path), log_path=log_relative,
        )  # fmt: skip

    # ------------------------------------------------------------ the end
    def _finish(self, plan: list[str], results: dict[str, StageResult], status: str) -> None:
        params: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for name in plan:
            params.update(flat_params(self.params.get(name, {}), self.snapshot.params_file))
            for values in self.metrics.get(name, {}).values():
                metrics.update(values)
        self.record.finish(status, params, metrics)
        done = [n for n in plan if n in results and results[n].outcome in ("ran", "cached")]
        if done and in_git(self.root):
            ensure_gitignored(
                self.root,
                [o.path for n in done for o in self.snapshot.stages[n].outs if o.cache],
            )
        if not self.options.targets and status == "finished":
            lock = read_lock(self.root)
            if set(lock) - set(self.snapshot.stages):
                update_lock(
                    self.root, {}, self.order, self.snapshot.state_dir, keep_only=self.order
                )
