"""Rendering for the CLI: ``--json`` for machines, rich for people, errors to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

_console: Any = None
_err_console: Any = None


def console() -> Any:
    """The rich console for stdout (created on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False, soft_wrap=True)
    return _console


def err_console() -> Any:
    """The rich console for stderr."""
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def emit(data: Any, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or through ``render`` for people."""
    if as_json or render is None:
        sys.stdout.write(json.dumps(data, default=_default, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()
    else:
        render(console())


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Any:
    """A rich table."""
    from rich.table import Table

    result = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*["" if v is None else str(v) for v in row])
    return result


def fail(message: str, hint: str | None = None) -> None:
    """Print an error (and a hint) to stderr."""
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err_console().print(f"[yellow]hint:[/] {escape(hint)}")
