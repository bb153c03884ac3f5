"""The ``mlcd`` console script: ``status``, ``run`` and ``data`` without loading typer.

``mlcd status`` and a no-op ``mlcd run`` are typed after every edit and run in every CI job;
importing typer and building its (pydantic-backed) parameter coercion costs several times
more than the whole up-to-date check. Their plain forms are parsed here and handed straight
to ``pipeline_view``; anything else (``--help``, other commands, an option spelled in a way
this parser does not know) goes to the full CLI in ``mlcd.cli.main``, which implements every
command, these two included, with the same behaviour and exit codes.
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


def _call(function: str, kwargs: dict[str, Any]) -> int:
    from mlcd.errors import MlcdError, exit_code

    try:
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
    parsed = parse(sys.argv[1:])
    if parsed is None:
        from mlcd.cli.main import main as full_cli

        full_cli()
        return
    sys.exit(_call(*parsed))


if __name__ == "__main__":  # pragma: no cover
    main()
