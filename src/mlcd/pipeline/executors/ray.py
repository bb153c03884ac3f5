"""RayExecutor: stage commands as Ray tasks (``pip install 'mlcd[ray]'``).

``RAY_ADDRESS`` picks the cluster; without it a local Ray instance is started for the run.
How a task gets at the stage's files (``MLCD_RAY_FILES``):

- ``store`` (chosen when the project's object store is remote: ``artifacts: s3://...``):
  the task runs in a scratch folder of its own on whichever node Ray picks, its inputs fetched
  by digest from the store and its outputs and log put back by digest; ``mlcd run`` then
  writes them into the workspace and records the run. No node needs the project folder.
- ``shared`` (chosen when the store is a local folder): the task runs in the stage's folder
  of the project, which every node must see at the same path (one machine, or a shared
  filesystem).

Each task reserves the stage's ``resources`` (``num_cpus``, default 1; ``num_gpus``).
Hashing and recording outputs stay on the machine running ``mlcd run``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mlcd.errors import ConfigError, ObjectNotFound
from mlcd.pipeline.executors import Executor, Job, JobResult

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.pipeline.executors.scratch import ScratchResult, ScratchTask

#: ``store``, ``shared`` or ``auto`` (the default: ``store`` when the object store is remote)
FILES_ENV = "MLCD_RAY_FILES"


def _run_command(
    cmd: str, cwd: str, env: Mapping[str, str], log_path: str
) -> tuple[int, float, float]:
    """What a Ray worker runs in ``shared`` mode: the command, its output appended to the log."""
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


def _run_scratch(task: ScratchTask) -> ScratchResult:
    """What a Ray worker runs in ``store`` mode (see ``scratch.run_in_scratch``)."""
    import ray

    from mlcd.pipeline.executors.scratch import run_in_scratch

    return run_in_scratch(task, node=ray.get_runtime_context().get_node_id())


def init_ray(ray: Any) -> bool:
    """Connect to the cluster in ``RAY_ADDRESS`` (a Ray instance of its own without it);
    True when this call connected, False when Ray already was.

    Raises:
        ConfigError: ``RAY_ADDRESS`` is a ``host:port`` nobody listens on (Ray itself would
            retry for minutes).
    """
    import socket

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address and "://" not in address and address not in ("auto", "local"):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
                pass
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"no Ray cluster answers at RAY_ADDRESS={address} ({exc})",
                hint="start one (ray start --head), correct RAY_ADDRESS, or unset it to use "
                "a Ray instance started for this command",
            ) from exc
    # Without RAY_ADDRESS, a Ray of its own: ray.init() alone would join whichever Ray
    # instance it finds running on this machine.
    ray.init(
        address=None if address else "local",
        log_to_driver=False,
        configure_logging=False,
        include_dashboard=False,
    )
    return True


def files_mode(objects: ObjectStore | None) -> str:
    """``store`` or ``shared``: how tasks get at the stage's files (see the module doc).

    Raises:
        ConfigError: ``MLCD_RAY_FILES`` has another value, or asks for ``store`` without one.
    """
    from mlcd.pipeline.executors.scratch import is_remote

    wanted = os.environ.get(FILES_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "store", "shared"):
        raise ConfigError(
            f"{FILES_ENV}={wanted!r} is not a way to move files",
            hint="use store (through the object store), shared (the project folder) or auto",
        )
    if wanted == "store" and objects is None:
        raise ConfigError(f"{FILES_ENV}=store needs the project's object store")
    if wanted == "auto":
        return "store" if objects is not None and is_remote(objects) else "shared"
    return wanted


class RayExecutor(Executor):
    """Runs up to ``jobs`` commands at once as Ray tasks.

    Raises:
        ConfigError: Ray is not installed, or ``MLCD_RAY_FILES`` is invalid.
    """

    def __init__(self, jobs: int, objects: ObjectStore | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the ray executor needs Ray", hint="pip install 'mlcd[ray]'") from exc
        self.mode = files_mode(objects)
        self._objects = objects
        self._ray = ray
        self._started_here = init_ray(ray)
        self._shared = ray.remote(_run_command)
        self._scratch = ray.remote(_run_scratch)
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mlcd-ray")
        self._running: set[Any] = set()
        self._lock = threading.Lock()
        self._cancelled = False

    def submit(self, job: Job) -> Future[JobResult]:
        return self._pool.submit(self._run, job)

    def _options(self, job: Job) -> dict[str, Any]:
        return {
            "num_cpus": float(job.resources.get("num_cpus", 1)),
            "num_gpus": float(job.resources.get("num_gpus", 0)),
            "max_retries": 0,  # a stage is not retried behind the user's back
        }

    def _run(self, job: Job) -> JobResult:
        if self._cancelled:
            now = time.time()
            return JobResult(-signal.SIGTERM, now, now)
        if self.mode == "store":
            return self._run_in_scratch(job)
        ref = self._shared.options(**self._options(job)).remote(
            job.cmd, job.cwd, dict(job.env), job.log_path
        )
        value = self._wait(job, ref)
        if value is None:
            now = time.time()
            return JobResult(-signal.SIGTERM, now, now)
        code, started, ended = value
        return JobResult(code, started, ended)

    def _run_in_scratch(self, job: Job) -> JobResult:
        from mlcd.pipeline.executors.scratch import ScratchTask, stage_in, stage_out, store_location

        assert self._objects is not None
        inputs = stage_in(job, self._objects)
        url, options = store_location(self._objects)
        wdir = os.path.relpath(job.cwd, job.root) if job.root else "."
        task = ScratchTask(
            job.stage, job.cmd, wdir, dict(job.env), inputs, tuple(job.outputs), url, options
        )
        ref = self._scratch.options(**self._options(job)).remote(task)
        result = self._wait(job, ref)
        if result is None:
            now = time.time()
            return JobResult(-signal.SIGTERM, now, now)
        if result.error is not None:
            raise ObjectNotFound(
                result.error,
                hint="the object store lost it after the run put it there: re-run with --force, "
                "or 'mlcd push' it from a machine that has it",
            )
        stage_out(job, self._objects, result)
        return JobResult(result.returncode, result.started_at, result.ended_at)

    def _wait(self, job: Job, ref: Any) -> Any:
        """The task's value, or None when it was cancelled or its worker was lost (noted in
        the stage's log)."""
        with self._lock:
            self._running.add(ref)
        try:
            return self._ray.get(ref)
        except Exception as exc:  # cancelled, or the worker or node was lost: the stage failed
            with open(job.log_path, "a", encoding="utf-8") as log:
                log.write(f"\nmlcd: the Ray task did not complete: {exc}\n")
            return None
        finally:
            with self._lock:
                self._running.discard(ref)

    def cancel(self) -> None:
        self._cancelled = True
        with self._lock:
            refs = list(self._running)
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished
                continue

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
