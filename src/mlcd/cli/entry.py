"""The ``mlcd`` console script: ``status``, ``run``, ``data``, ``runs list``, ``--help`` and
``--version`` without typer.

``mlcd status`` and a no-op ``mlcd run`` are typed after every edit and run in every CI job;
importing typer and building its (pydantic-backed) parameter coercion costs several times
more than the whole up-to-date check. Their plain forms are parsed here and handed straight
to ``pipeline_view``; anything else (``--help``, other commands, an option spelled in a way
this parser does not know) goes to the full CLI in ``mlcd.cli.main``, which implements every
command, these two included, with the same behaviour and exit codes. A plain ``mlcd runs
list`` (no filter, no ordering) goes to ``mlcd.cli.runs_view`` on an embedded SQLite store.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: command words -> (flags: option -> parameter, valued options: option -> (parameter, type),
#: the parameter positional arguments go to (None: none allowed), the pipeline_view function)
_COMMANDS: dict[
    tuple[str, ...],
    tuple[dict[str, str], dict[str, tuple[str, type]], str | None, str],
] = {
    ("status",): ({"--check": "check", "--json": "as_json"}, {}, "stages", "show_status"),
    ("run",): (
        {"--force": "force", "-f": "force", "--dry-run": "dry_run", "--json": "as_json"},
        {"--jobs": ("jobs", int), "-j": ("jobs", int), "--executor": ("executor", str)},
        "stages",
        "run_stages",
    ),
    ("data", "add"): ({"--json": "as_json"}, {}, "paths", "add_data_paths"),
    ("data", "status"): ({"--check": "check", "--json": "as_json"}, {}, None, "show_data_status"),
}


def parse(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """``(pipeline_view function, keyword arguments)`` for a plain call, else None."""
    words = next((w for w in _COMMANDS if tuple(argv[: len(w)]) == w), None)
    if words is None:
        return None
    flags, valued, positional, function = _COMMANDS[words]
    kwargs: dict[str, Any] = {positional: []} if positional else {}
    args = iter(argv[len(words) :])
    for arg in args:
        name, _, inline = arg.partition("=")
        if arg in flags:
            kwargs[flags[arg]] = True
        elif name in valued:
            parameter, kind = valued[name]
            text = inline if inline else next(args, None)
            if text is None:
                return None
            try:
                kwargs[parameter] = kind(text)
            except ValueError:
                return None  # typer words the usage error
        elif arg.startswith("-") or positional is None:
            return None  # --help, --, an option only typer knows, an unexpected argument
        else:
            kwargs[positional].append(arg)
    if positional == "paths":
        if not kwargs["paths"]:
            return None  # typer says a path is required
        kwargs["paths"] = [Path(p) for p in kwargs["paths"]]
    return function, kwargs


def parse_runs_list(argv: list[str]) -> dict[str, Any] | None:
    """Keyword arguments of ``runs_view.list_newest`` for ``runs list [-n N] [--json]``
    (no filter, no ordering), else None."""
    if argv[:2] != ["runs", "list"]:
        return None
    kwargs: dict[str, Any] = {}
    args = iter(argv[2:])
    for arg in args:
        name, _, inline = arg.partition("=")
        if arg == "--json":
            kwargs["as_json"] = True
        elif name in ("--limit", "-n"):
            text = inline if inline else next(args, None)
            if text is None or not text.isdigit() or int(text) < 1:
                return None  # typer words the usage error
            kwargs["limit"] = int(text)
        else:
            return None
    return kwargs


def _call(function: str, kwargs: dict[str, Any]) -> int:
    from mlcd.errors import MlcdError, exit_code

    try:
        if function == "list_newest":
            from mlcd.cli import runs_view

            runs_view.list_newest(**kwargs)
            return 0
        from mlcd.cli import pipeline_view

        getattr(pipeline_view, function)(**kwargs)
        return 0
    except MlcdError as exc:
        from mlcd.cli.output import fail

        fail(exc.message, exc.hint)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        from mlcd.cli.output import debugging, fail_os_error

        if debugging():
            raise
        return fail_os_error(exc)


def main() -> None:
    """Entry point of the ``mlcd`` script."""
    from mlcd.cli.output import guard_streams

    guard_streams()
    if sys.argv[1:] == ["--version"]:
        from mlcd import __version__

        sys.stdout.write(f"mlcd {__version__}\n")
        sys.exit(0)
    if sys.argv[1:] == ["--help"]:
        from mlcd.cli.lazy import root_help

        text = root_help()
        if text is not None:
            sys.stdout.write(text)
            sys.exit(0)
    parsed = parse(sys.argv[1:])
    runs_list = None if parsed is not None else parse_runs_list(sys.argv[1:])
    if runs_list is not None:
        from mlcd.cli.runs_view import Fallback

        try:
            sys.exit(_call("list_newest", runs_list))
        except Fallback:
            pass  # not a store the fast path opens: the full CLI does it
    if parsed is None:
        from mlcd.cli.main import main as full_cli

        full_cli()
        return
    sys.exit(_call(*parsed))


if __name__ == "__main__":  # pragma: no cover
    main()
