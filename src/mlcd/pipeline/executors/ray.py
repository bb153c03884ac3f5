"""RayExecutor: stage commands as Ray tasks (``pip install 'mlcd[ray]'``).

Each command runs through the shell on a Ray worker, in the stage's folder, writing its log
where ``mlcd run`` expects it: workers must see the project at the same path (a shared
filesystem, or a single machine). ``RAY_ADDRESS`` picks the cluster; without it a local
Ray instance is started for the run. Hashing and storing outputs stay on the machine running
``mlcd run``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from mlcd.errors import ConfigError
from mlcd.pipeline.executors import Executor, Job, JobResult


def _run_command(
    cmd: str, cwd: str, env: Mapping[str, str], log_path: str
) -> tuple[int, float, float]:
    """What a Ray worker runs: the command, its output appended to the log."""
    import subprocess
    import time as clock

    started = clock.time()
    with open(log_path, "ab") as log:
        process = subprocess.run(
            cmd,
            shell=True,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return process.returncode, started, clock.time()


class RayExecutor(Executor):
    """Runs up to ``jobs`` commands at once as Ray tasks of one CPU each.

    Raises:
        ConfigError: Ray is not installed.
    """

    def __init__(self, jobs: int) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the ray executor needs Ray", hint="pip install 'mlcd[ray]'") from exc
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            ray.init(
                num_cpus=None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self._remote = ray.remote(num_cpus=1)(_run_command)
        self._slots = threading.Semaphore(max(1, jobs))
        self._running: dict[Any, Future[JobResult]] = {}
        self._lock = threading.Lock()

    def submit(self, job: Job) -> Future[JobResult]:
        self._slots.acquire()
        ref = self._remote.remote(job.cmd, job.cwd, dict(job.env), job.log_path)
        result: Future[JobResult] = Future()
        with self._lock:
            self._running[ref] = result

        def finished(done: Future[Any]) -> None:
            with self._lock:
                self._running.pop(ref, None)
            self._slots.release()
            try:
                code, started, ended = done.result()
                result.set_result(JobResult(code, started, ended))
            except Exception as exc:  # cancelled, or the worker was lost: the stage failed
                with open(job.log_path, "a", encoding="utf-8") as log:
                    log.write(f"\nmlcd: the Ray task did not complete: {exc}\n")
                now = time.time()
                result.set_result(JobResult(-15, now, now))

        ref.future().add_done_callback(finished)
        return result

    def cancel(self) -> None:
        with self._lock:
            refs = list(self._running)
        for ref in refs:
            self._ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
