"""Rendering for the CLI: ``--json`` for machines, rich for people, errors to stderr."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from typing import Any

_console: Any = None
_err_console: Any = None


class _Masked:
    """A text stream that hides secrets (``mlcd.secrets``) in everything written to it."""

    def __init__(self, stream: Any, known: list[str]) -> None:
        self._stream = stream
        self._known = known

    def write(self, text: str) -> int:
        from mlcd.secrets import mask_text, remembered

        # what the configuration remembered (mlcd.secrets.remember_config) counts too
        self._stream.write(mask_text(text, remembered(self._known)))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Mask secrets in all the CLI writes to stdout and stderr (called once at start-up).

    The one place that keeps a planted password out of every command's output, error
    messages and tracebacks included, whichever code path printed it.
    """
    from mlcd.secrets import known_secrets

    known = known_secrets()
    if not isinstance(sys.stdout, _Masked):
        sys.stdout = _Masked(sys.stdout, known)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Masked):
        sys.stderr = _Masked(sys.stderr, known)  # type: ignore[assignment]


#: Width of tables when stdout is not a terminal and COLUMNS is unset.
PIPED_WIDTH = 240


def console() -> Any:
    """The rich console for stdout (created on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        # piped or captured (CI logs): rich would cut tables at 80 columns; COLUMNS still wins
        wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH
        _console = Console(highlight=False, soft_wrap=True, width=wide)
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


def note(message: str) -> None:
    """Print a note to stderr (kept off stdout, so ``--json`` output stays clean)."""
    from rich.markup import escape

    err_console().print(f"[dim]note:[/] {escape(message)}")


def fail(message: str, hint: str | None = None) -> None:
    """Print an error (and a hint) to stderr."""
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err_console().print(f"[yellow]hint:[/] {escape(hint)}")


#: What to do about an operating-system error nobody below the CLI expected, by errno.
_OS_HINTS = {
    errno.EROFS: "the project (or this folder) is read-only: run the command in a writable "
    "checkout; read-only commands (runs list, status, models list) work here",
    errno.EACCES: "mlcd may not write (or read) there: fix the permissions, or run the command "
    "in a checkout you own",
    errno.EPERM: "the operating system refused it: check the file's permissions and attributes",
    errno.EFBIG: "a file grew past the file-size limit of this process ('ulimit -f'): raise "
    "the limit, or keep files that large out of this step",
    errno.ENOSPC: "the disk is full: free some space (e.g. 'mlcd gc') and run it again",
    errno.EDQUOT: "the disk quota is used up: free some space (e.g. 'mlcd gc') and run it again",
    errno.ENAMETOOLONG: "a file name is longer than the file system allows: use a shorter name",
    errno.EMFILE: "too many files are open: raise 'ulimit -n' and run it again",
}


def fail_os_error(exc: OSError) -> int:
    """Print an operating-system error as a message with a hint; returns exit code 3.

    ``MLCD_DEBUG=1`` in the environment shows the traceback instead (the caller re-raises).
    """
    what = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    shown = [n if len(n) <= 300 else n[:150] + "…" + n[-100:] for n in names]
    message = f"{what}: {' -> '.join(shown)}" if shown else what
    fail(message, _OS_HINTS.get(exc.errno or 0, "set MLCD_DEBUG=1 to see where it happened"))
    return 3


def debugging() -> bool:
    """Whether ``MLCD_DEBUG`` asks for tracebacks instead of worded errors."""
    return os.environ.get("MLCD_DEBUG", "") not in ("", "0")
