"""Live progress of ``mlcd run`` on stderr: a line per finished stage, ticking running ones."""

from __future__ import annotations

import threading
import time
from typing import Any

from mlcd.pipeline.plan import Reporter, StageResult

#: One character per stage outcome, shared with the summary ``pipeline_view`` prints.
ICONS = {
    "ran": "✓",
    "cached": "↺",
    "skipped": "·",
    "failed": "✗",
    "blocked": "⊘",
    "run": "▶",
    "restore": "↺",
    "maybe": "?",
}


class Progress(Reporter):
    """Draws run events on stderr: rich Live on a terminal, plain lines elsewhere (CI logs)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._running: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._live: Any = None
        self._console: Any = None

    def _start(self) -> None:
        if self._console is not None or not self.enabled:
            return
        from mlcd.cli.output import err_console

        self._console = err_console()
        if self._console.is_terminal:
            from rich.live import Live

            self._live = Live(
                self._render(), console=self._console, refresh_per_second=8, transient=True
            )
            self._live.start()

    def _render(self) -> Any:
        from rich.text import Text

        now = time.monotonic()
        lines = [
            f"  ⠿ {name} {action} ({now - since:.1f}s)"
            for name, (action, since) in self._running.items()
        ]
        return Text("\n".join(lines))

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def planned(self, stages: list[str]) -> None:
        self._start()
        if self._console is not None:
            self._console.print(f"[bold]mlcd run[/]: {len(stages)} stage(s): {', '.join(stages)}")

    def started(self, stage: str, action: str) -> None:
        with self._lock:
            self._start()
            self._running[stage] = (action, time.monotonic())
            if self._live is None and self._console is not None:
                self._console.print(f"  ▶ {stage}: {action}…")
            self._refresh()

    def waiting(self, stage: str, path: str, holder: str) -> None:
        with self._lock:
            self._start()
            if self._console is not None:
                self._console.print(
                    f"  [yellow]…[/] {stage}: waiting for '{path}', held by {holder}", markup=True
                )

    def finished(self, result: StageResult) -> None:
        from rich.markup import escape

        with self._lock:
            self._start()
            self._running.pop(result.stage, None)
            self._refresh()
            if self._console is None:
                return
            style = {"failed": "red", "blocked": "red", "cached": "cyan", "ran": "green"}.get(
                result.outcome, "dim"
            )
            what = {
                "ran": f"ran in {result.duration_s:.1f}s",
                "cached": f"restored from cache in {result.duration_s:.1f}s",
                "skipped": "up to date",
                "failed": f"failed after {result.duration_s:.1f}s: {result.error}",
                "blocked": result.reason,
            }.get(result.outcome, result.reason)
            icon = ICONS.get(result.outcome, "·")
            self._console.print(f"  [{style}]{icon} {escape(result.stage)}[/]: {escape(what)}")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
