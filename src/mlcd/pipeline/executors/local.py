"""LocalExecutor: stage commands as processes on this machine, through the shell."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from mlcd.pipeline.executors import Executor, Job, JobResult

#: How long a command gets to exit after SIGTERM before it is killed.
_GRACE_S = 5.0


class LocalExecutor(Executor):
    """Runs up to ``jobs`` commands at once, each in its own process group.

    A process group per command lets ``cancel`` stop the shell and everything it started.
    """

    def __init__(self, jobs: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mlcd-job")
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._cancelled = False

    def submit(self, job: Job) -> Future[JobResult]:
        return self._pool.submit(self._run, job)

    def _run(self, job: Job) -> JobResult:
        started = time.time()
        if self._cancelled:
            return JobResult(-signal.SIGTERM, started, time.time())
        with open(job.log_path, "ab") as log:
            process = subprocess.Popen(
                job.cmd,
                shell=True,
                cwd=job.cwd,
                env=dict(job.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=job.pass_fds,
            )
            with self._lock:
                self._running.add(process)
            try:
                returncode = process.wait()
            finally:
                with self._lock:
                    self._running.discard(process)
        return JobResult(returncode, started, time.time())

    def cancel(self) -> None:
        self._cancelled = True
        with self._lock:
            running = list(self._running)
        for process in running:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + _GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)
