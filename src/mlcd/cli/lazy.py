"""The root command group, loading each command's module only when that command runs.

Building every command up front costs more than ``mlcd --help`` itself: typer evaluates the
(string) annotations of every parameter of every command. ``COMMANDS`` names each top-level
command, the modules whose ``register(app)`` defines it and the first paragraph of its help,
which is all the root ``--help`` prints; ``mlcd <cmd> ...`` imports and builds only ``<cmd>``'s
modules. ``tests/cli/test_startup_lazy.py`` checks the table against the modules, so a command
cannot be left out of it.

This module imports typer only when ``LazyGroup`` (or a build) is first used: the console
script prints the root ``--help`` from ``COMMANDS`` alone (``root_help``), and a test compares
that text with typer's.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

#: name -> (modules whose ``register`` defines it, first paragraph of its help), in the order
#: typer lists them (commands before groups, each in registration order).
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "init": (
        ("project_cmd",),
        "Create mlcd.yaml, params.yaml, the .gitignore entry and optionally a CI workflow.",
    ),
    "gc": (
        ("project_cmd",),
        "Remove objects nothing references (runs, cache, models, mlcd.lock). "
        "Exit 1 if corrupt found.",
    ),
    "verify": (
        ("project_cmd",),
        "Check every stored object against its digest. Exit 1 if any is corrupt.",
    ),
    "events": (("events_cmd",), "Show the audit trail, newest first."),
    "diff": (
        ("tracking_cmd",),
        "How params and metrics changed from REV_OR_RUN (a git revision, read from its "
        "mlcd.lock, or a run) to --against (default: the workspace). 'run:ID' or 'rev:REV' "
        "force one reading.",
    ),
    "serve": (
        ("serve_cmd",),
        "Serve a registered model over HTTP, following its alias as it moves.",
    ),
    "run": (
        ("pipeline_cmd",),
        "Run stale stages and their dependents; restore cached ones. Exit 3 if a stage fails.",
    ),
    "status": (("pipeline_cmd",), "Show stale stages and changed tracked data, and why."),
    "dag": (("pipeline_cmd",), "Print the stage graph."),
    "push": (
        ("pipeline_cmd",),
        "Send objects (mlcd.lock outputs, tracked data) and run-cache entries to a remote.",
    ),
    "pull": (
        ("pipeline_cmd",),
        "Fetch run-cache entries and objects from a remote; restore missing data and outputs.",
    ),
    "evaluate": (
        ("models_cmd",),
        "Score a candidate against the champion on held-out data; exit 1 if a gate fails, "
        "3 if a latency gate was too noisy to judge.",
    ),
    "monitor": (
        ("monitor_cmd",),
        "Compare recent predictions with the reference: drift, quality, performance.",
    ),
    "retrain": (
        ("retrain_cmd",),
        "Retrain now, through the same path as the policies: pipeline, gates, promotion.",
    ),
    "watch": (
        ("retrain_cmd",),
        "Evaluate the retrain policies on an interval; retrain, gate, promote, advance canaries.",
    ),
    "ci": (
        ("ci_cmd",),
        "Pull caches, run the pipeline, gate each model against champion, diff, report, push.",
    ),
    "doctor": (
        ("doctor_cmd",),
        "Check the database, every object and mlcd.lock against each other. Exit 1 on a problem.",
    ),
    "ui": (
        ("ui_cmd",),
        "Browse runs, compare them, follow models and their aliases, events and the pipeline.",
    ),
    "fleet": (
        ("fleet_cmd",),
        "Show every serving replica (host:pid) seen in the store: versions, traffic, last seen.",
    ),
    "config": (("project_cmd",), "Check and show mlcd.yaml."),
    "runs": (("tracking_cmd",), "Find, inspect and compare tracked runs."),
    "plots": (("tracking_cmd",), "Draw the plots stages declare."),
    "data": (("pipeline_cmd",), "Track data that no stage produces."),
    "models": (("models_cmd",), "The model registry: versions, aliases, promotion."),
    "log": (("log_cmd",), "The prediction log: compact its segments into daily files."),
    "tokens": (
        ("tokens_cmd",),
        "Bearer tokens for 'mlcd serve': create (shown once), list, revoke.",
    ),
    "import": (
        ("import_cmd",),
        "Bring an existing DVC project or MLflow tracking store into mlcd, in one command.",
    ),
    "exp": (
        ("exp_cmd", "exp_share_cmd"),
        "Experiments: the pipeline with overridden params, outside the work tree.",
    ),
}

#: Commands built so far in this process (a module registers its commands once).
_built: dict[str, Any] = {}
_loaded_modules: set[str] = set()


def scratch_app() -> typer.Typer:
    """A Typer with the root's settings, for a command module to register into."""
    import typer

    return typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False)


def build(modules: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Import ``modules``, let each register, and return the click commands they define."""
    import typer

    app = scratch_app()
    for name in modules:
        importlib.import_module(f"mlcd.cli.{name}").register(app)
    group = typer.main.get_group(app)
    return {name: group.commands[name] for name in group.list_commands(None)}  # type: ignore[arg-type]


def _load(name: str) -> Any:
    if name not in _built:
        modules = [m for m in COMMANDS[name][0] if m not in _loaded_modules]
        _built.update(build(modules))
        _loaded_modules.update(modules)
    return _built[name]


class _Commands(MutableMapping[str, Any]):
    """Every command name at once; a command is built on first access."""

    def __init__(self, eager: MutableMapping[str, Any]) -> None:
        self._eager = dict(eager)

    def __getitem__(self, name: str) -> Any:
        if name in self._eager:
            return self._eager[name]
        if name in COMMANDS:
            return _load(name)
        raise KeyError(name)

    def __setitem__(self, name: str, command: Any) -> None:
        self._eager[name] = command

    def __delitem__(self, name: str) -> None:
        del self._eager[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._eager if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(1 for name in self._eager if name not in COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._eager

    def short_help(self, name: str, limit: int) -> str | None:
        """What ``--help`` prints about ``name`` (None: hidden), without building it."""
        if name in self._eager or name in _built:
            command = self[name]
            return None if command.hidden else str(command.get_short_help_str(limit))
        return short_help(COMMANDS[name][1], limit)


def short_help(text: str, limit: int) -> str:
    """The first paragraph of ``text`` cut to ``limit`` characters as click cuts it (at a
    sentence end, else at a word with "...")."""
    paragraph_end = text.find("\n\n")
    words = (text if paragraph_end == -1 else text[:paragraph_end]).split()
    if words[:1] == ["\b"]:
        words = words[1:]
    if not words:
        return ""
    total, last = 0, len(words) - 1
    for i, word in enumerate(words):
        total += len(word) + (i > 0)
        if total > limit:
            break
        if word[-1] == ".":
            return " ".join(words[: i + 1])
        if total == limit and i != last:
            break
    else:
        return " ".join(words)
    total += len("...")
    while i > 0:
        total -= len(words[i]) + (i > 0)
        if total <= limit:
            break
        i -= 1
    return (" ".join(words[:i]) + "...").strip()


#: The root's help and options, as ``mlcd.cli.main`` declares them.
ROOT_HELP = "Continuous integration and delivery for machine learning."
_ROOT_OPTIONS = (
    ("--version", "Print the version and exit."),
    ("--help", "Show this message and exit."),
)


def root_help(columns: int | None = None) -> str | None:
    """``mlcd --help`` as typer prints it on a terminal at least 80 columns wide (or none),
    without importing typer: root commands are listed from ``COMMANDS``, their short help cut
    to fit the line, so nothing wraps. None on a narrower terminal (typer wraps the text)."""
    import shutil

    if columns is None:
        columns = shutil.get_terminal_size().columns
    if columns < 80:
        return None
    width = 78  # click: min(columns, 80) - 2
    names = list(COMMANDS)
    name_width = max(len(name) for name in names)
    limit = width - 6 - name_width
    option_width = max(len(option) for option, _ in _ROOT_OPTIONS)
    lines = ["Usage: mlcd [OPTIONS] COMMAND [ARGS]...", "", f"  {ROOT_HELP}", "", "Options:"]
    lines += [f"  {option.ljust(option_width + 2)}{text}" for option, text in _ROOT_OPTIONS]
    lines += ["", "Commands:"]
    lines += [
        f"  {name.ljust(name_width + 2)}{short_help(COMMANDS[name][1], limit)}" for name in names
    ]
    return "\n".join(lines) + "\n"


def _lazy_group() -> type:
    from typer.core import TyperGroup

    class LazyGroup(TyperGroup):
        """The root group: lists every command from ``COMMANDS``, builds one when it is used."""

        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            self.commands = _Commands(self.commands)

        def list_commands(self, ctx: Any) -> list[str]:
            return list(self.commands)

        def format_commands(self, ctx: Any, formatter: Any) -> None:
            commands = self.commands
            assert isinstance(commands, _Commands)
            names = [
                name
                for name in self.list_commands(ctx)
                if commands.short_help(name, 45) is not None
            ]
            if names:
                limit = formatter.width - 6 - max(len(name) for name in names)
                with formatter.section("Commands"):
                    formatter.write_dl([(name, commands.short_help(name, limit)) for name in names])

    return LazyGroup


def __getattr__(name: str) -> Any:
    if name == "LazyGroup":  # built (and typer imported) on first use
        group = _lazy_group()
        globals()["LazyGroup"] = group
        return group
    raise AttributeError(f"module 'mlcd.cli.lazy' has no attribute {name!r}")
