"""PathLock: OS file locks per output path, so two ``mlcd run`` share a project safely.

A stage holds an exclusive lock on each path it writes and a shared lock on each dep that
another stage writes. Independent stages of two runs proceed side by side; a stage whose
outputs another run is writing waits, with a message naming the holder. Locks are
``flock(2)`` locks: the kernel drops them when the holder dies, so a crash never leaves a
stale lock behind. The lock files are passed to the stage's command, so a command that
outlives a killed ``mlcd run`` keeps its outputs locked until it exits.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlcd.digest import hash_bytes
from mlcd.errors import PipelineError

_POLL_S = 0.05


class Cancelled(PipelineError):
    """Waiting for a lock was abandoned because the run is stopping."""


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@dataclass
class HeldLocks:
    """Locks a stage holds; ``release`` (or the end of the process) frees them."""

    fds: list[int] = field(default_factory=list)

    def release(self) -> None:
        """Free every lock."""
        while self.fds:
            os.close(self.fds.pop())


class PathLocks:
    """Locks on project paths, kept as files in ``.mlcd/locks/``.

    Args:
        state_dir: the project's ``.mlcd`` folder.
    """

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / "locks"

    def lock_file(self, path: str) -> Path:
        """The lock file of a project path."""
        return self.folder / f"{hash_bytes(path.encode()).hex[:24]}.lock"

    def acquire(
        self,
        write: Iterable[str],
        read: Iterable[str],
        owner: str,
        on_wait: Callable[[str, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> HeldLocks:
        """Lock ``write`` paths exclusively and ``read`` paths shared, waiting as needed.

        Locks are taken in one global order (by lock file name), so two runs never deadlock.

        Args:
            write: paths the stage writes.
            read: paths the stage reads that some stage writes.
            owner: who holds the lock, shown to whoever waits for it.
            on_wait: called once per contended path with ``(path, holder)``.
            cancel: set to stop waiting (raises ``Cancelled``).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted: dict[Path, tuple[str, bool]] = {}
        for path in read:
            wanted[self.lock_file(path)] = (path, False)
        for path in write:
            wanted[self.lock_file(path)] = (path, True)
        held = HeldLocks()
        try:
            for lock_path in sorted(wanted):
                path, is_write = wanted[lock_path]
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                held.fds.append(fd)
                self._take(fd, path, is_write, on_wait, cancel)
                if is_write:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{owner} writing {path}\n".encode(), 0)
        except BaseException:
            held.release()
            raise
        return held

    @staticmethod
    def _take(
        fd: int,
        path: str,
        is_write: bool,
        on_wait: Callable[[str, str], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        mode = fcntl.LOCK_EX if is_write else fcntl.LOCK_SH
        warned = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not warned:
                warned = True
                if on_wait is not None:
                    holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
                    on_wait(path, holder or "another mlcd run")
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"stopped while waiting for the lock on '{path}'")
            time.sleep(_POLL_S)
