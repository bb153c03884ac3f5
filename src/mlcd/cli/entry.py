"""The ``mlcd`` console script: ``status`` and ``run`` without loading typer.

``mlcd status`` and a no-op ``mlcd run`` are typed after every edit and run in every CI job;
importing typer and building its (pydantic-backed) parameter coercion costs several times
more than the whole up-to-date check. Their plain forms are parsed here and handed straight
to ``pipeline_view``; anything else (``--help``, other commands, an option spelled in a way
this parser does not know) goes to the full CLI in ``mlcd.cli.main``, which implements every
command, these two included, with the same behaviour and exit codes.
"""

from __future__ import annotations

import sys
from typing import Any

#: command -> (flags: option -> parameter, valued options: option -> (parameter, type))
_COMMANDS: dict[str, tuple[dict[str, str], dict[str, tuple[str, type]]]] = {
    "status": ({"--check": "check", "--json": "as_json"}, {}),
    "run": (
        {"--force": "force", "-f": "force", "--dry-run": "dry_run", "--json": "as_json"},
        {"--jobs": ("jobs", int), "-j": ("jobs", int), "--executor": ("executor", str)},
    ),
}


def parse(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """``(command, keyword arguments)`` for a plain ``status``/``run`` call, else None."""
    if not argv or argv[0] not in _COMMANDS:
        return None
    command = argv[0]
    flags, valued = _COMMANDS[command]
    kwargs: dict[str, Any] = {"stages": []}
    args = iter(argv[1:])
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
        elif arg.startswith("-"):
            return None  # --help, --, or an option only typer knows
        else:
            kwargs["stages"].append(arg)
    return command, kwargs


def _call(command: str, kwargs: dict[str, Any]) -> int:
    from mlcd.errors import MlcdError, exit_code

    try:
        from mlcd.cli import pipeline_view as view

        if command == "status":
            view.show_status(**kwargs)
        else:
            view.run_stages(**kwargs)
        return 0
    except MlcdError as exc:
        from mlcd.cli.output import fail

        fail(exc.message, exc.hint)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


def main() -> None:
    """Entry point of the ``mlcd`` script."""
    parsed = parse(sys.argv[1:])
    if parsed is None:
        from mlcd.cli.main import main as full_cli

        full_cli()
        return
    sys.exit(_call(*parsed))


if __name__ == "__main__":  # pragma: no cover
    main()
