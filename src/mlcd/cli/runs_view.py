"""``mlcd runs list`` without typer and SQLAlchemy: the newest runs, no filter, no ordering.

The console script (``mlcd.cli.entry``) sends a plain ``mlcd runs list [-n N] [--json]`` here.
When the store is not one the SQLite fast path opens (``mlcd.tracking.records.newest_runs``
returns None), ``Fallback`` sends the call to the full CLI, which does the same through
``mlcd.tracking.query.search``. The rendering is ``tracking_cmd.list_runs``' for a call
without filter and ordering; ``tests/cli/test_runs_fast.py`` compares the two outputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

#: Metric columns shown besides the run's own (``tracking_cmd._EXTRA_COLUMNS``).
_EXTRA_COLUMNS = 4


class Fallback(Exception):
    """The fast path does not apply: run the full CLI."""


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_row(record: Any, cells: Iterable[str]) -> list[str]:
    """A run's row of ``runs list``: its own columns, then ``cells`` (formatted values)."""
    return [
        record.id[:8],
        record.name or "",
        record.kind,
        record.status,
        _when(record.started_at),
        _duration(record.duration),
        *cells,
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def list_newest(limit: int = 50, as_json: bool = False) -> None:
    """Print the newest ``limit`` runs as ``mlcd runs list`` does.

    Raises:
        Fallback: the store needs the full path.
    """
    from mlcd.cli.output import emit
    from mlcd.tracking.records import newest_runs

    records = newest_runs(limit)
    if records is None:
        raise Fallback
    if as_json:
        emit([r.to_dict() for r in records], True)
        return
    counts: dict[str, int] = {}
    for record in records:
        for key in record.metrics:
            counts[f"metrics.{key}"] = counts.get(f"metrics.{key}", 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    columns = [key for key, _ in ranked][:_EXTRA_COLUMNS]
    rows = [
        run_row(r, (_cell(r.metrics.get(c.removeprefix("metrics."))) for c in columns))
        for r in records
    ]

    def render(out: Any) -> None:
        if not records:
            out.print("no runs yet: 'mlcd run' or mlcd.start_run()")
            return
        from rich import box

        from mlcd.cli.output import table

        names = [c.removeprefix("metrics.") for c in columns]
        headers = ["run", "name", "kind", "status", "started", "took", *names]
        result = table(None, headers, rows)
        result.box = box.SIMPLE_HEAD
        for column in result.columns:
            column.no_wrap = True
        if out.is_terminal:
            out.print(result)
            return
        from rich.console import Console

        Console(width=250, highlight=False, file=out.file).print(result)

    emit(None, False, render)
