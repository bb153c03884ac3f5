"""Progress of long library steps (evaluate, promote, monitor) on stderr.

The library calls ``progress(step, done=None, total=None)``; this draws it with rich on a
terminal (a spinner per step, a bar when the step has a total) and stays silent under
``--json`` or when stderr is not a terminal (CI logs, pipes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Steps:
    """A callable progress sink backed by a rich Progress."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None
        self._step: str | None = None

    def __call__(self, step: str, done: int | None = None, total: int | None = None) -> None:
        if self._progress is None:
            return
        if step != self._step:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(step, total=total)
            self._step = step
        self._progress.update(self._task, completed=done or 0, total=total)


@contextmanager
def step_progress(title: str, enabled: bool = True) -> Iterator[_Steps]:
    """A progress sink for the library: drawn on a terminal's stderr, else a no-op."""
    from mlcd.cli.output import err_console

    console = err_console()
    if not enabled or not console.is_terminal:
        yield _Steps(None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn(f"{title}: " + "{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield _Steps(progress)
