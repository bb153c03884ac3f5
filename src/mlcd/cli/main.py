"""``mlcd``: the entry point. Each command group lives in its own module and registers here.

Exit codes: 0 ok; 1 a check or gate failed; 2 usage or configuration error; 3 runtime failure.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mlcd import __version__
from mlcd.cli.lazy import COMMANDS, LazyGroup

app = typer.Typer(
    name="mlcd",
    cls=LazyGroup,
    help="Continuous integration and delivery for machine learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlcd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Continuous integration and delivery for machine learning."""


#: Command modules under mlcd.cli, each with a ``register(app)``; add yours to the tuple, and
#: its commands to ``mlcd.cli.lazy.COMMANDS`` so that they are built only when used.
COMMAND_MODULES = (
    "project_cmd",
    "events_cmd",
    "tracking_cmd",
    "serve_cmd",
    "pipeline_cmd",
    "models_cmd",
    "monitor_cmd",
    "log_cmd",
    "retrain_cmd",
    "ci_cmd",
    "doctor_cmd",
    "tokens_cmd",
    "import_cmd",
    "ui_cmd",
    "exp_cmd",
    "exp_share_cmd",
    "fleet_cmd",
)


def _register() -> None:
    """Register now only the modules ``COMMANDS`` does not cover (the rest load on use)."""
    import importlib

    lazy = {module for modules, _ in COMMANDS.values() for module in modules}
    for name in COMMAND_MODULES:
        if name not in lazy:
            importlib.import_module(f"mlcd.cli.{name}").register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the documented exit code."""
    from mlcd.cli.output import guard_streams
    from mlcd.errors import MlcdError, exit_code

    guard_streams()
    command = typer.main.get_command(app)
    try:
        returned = command.main(args=argv, prog_name="mlcd", standalone_mode=False)
        # Without standalone mode typer *returns* the code of typer.Exit (130 for Ctrl-C).
        code = returned if isinstance(returned, int) and not isinstance(returned, bool) else 0
    except MlcdError as exc:
        from mlcd.cli.output import fail

        fail(exc.message, exc.hint)
        code = exit_code(exc)
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:
        from mlcd.cli.output import debugging, fail_os_error

        if debugging():
            raise
        code = fail_os_error(exc)
    except Exception as exc:
        # typer vendors click, so its exceptions are matched by shape, not by class.
        kind = type(exc).__name__
        if kind == "Exit":
            code = int(getattr(exc, "exit_code", 0))
        elif kind == "Abort":
            code = 130
        elif hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            code = 2
        else:
            raise
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
