"""Executors: where stage commands run. The port is ``Executor`` (submit, cancel, close).

``local`` (the default) runs commands as processes on this machine; ``ray`` (the ``ray``
extra) runs them as tasks on a Ray cluster: each in a scratch folder of its own, its inputs
and outputs moved by digest through the object store when that store is remote (S3, any
fsspec URL), else in the project folder, which the workers must then share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlcd.errors import ConfigError

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore


@dataclass(frozen=True)
class Job:
    """One stage command to run: in ``cwd``, with ``env``, output appended to ``log_path``.

    ``root``, ``inputs`` and ``outputs`` say what the command reads and writes (project paths;
    an input's digest, or None when not known yet), for executors whose workers do not see
    the project folder; ``resources`` is what the command reserves there.
    """

    stage: str
    cmd: str
    cwd: str
    env: Mapping[str, str]
    log_path: str
    pass_fds: tuple[int, ...] = field(default=())
    root: str = ""
    inputs: Mapping[str, str | None] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    """How a command ended: its exit code (negative: killed by that signal) and times."""

    returncode: int
    started_at: float
    ended_at: float

    @property
    def duration_s(self) -> float:
        """Wall time of the command."""
        return self.ended_at - self.started_at


class Executor(ABC):
    """Runs stage commands; one executor serves one ``mlcd run``."""

    @abstractmethod
    def submit(self, job: Job) -> Future[JobResult]:
        """Start ``job``; the future completes when its command has exited."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every running command (the run is being interrupted)."""

    def close(self) -> None:  # noqa: B027 (an optional hook)
        """Release resources; called once the run is over."""


def open_executor(name: str, jobs: int, objects: ObjectStore | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``) running up to ``jobs`` at once;
    ``objects`` is the project's object store (the ``ray`` executor moves files through it).

    Raises:
        ConfigError: unknown name, or the ``ray`` extra is not installed.
    """
    if name == "local":
        from mlcd.pipeline.executors.local import LocalExecutor

        return LocalExecutor(jobs)
    if name == "ray":
        from mlcd.pipeline.executors.ray import RayExecutor

        return RayExecutor(jobs, objects)
    raise ConfigError(f"unknown executor {name!r}", hint="use 'local' or 'ray'")


__all__ = ["Executor", "Job", "JobResult", "open_executor"]
