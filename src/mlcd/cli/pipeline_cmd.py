"""Pipeline commands: ``run``, ``status``, ``dag``, ``data add|status``, ``push``, ``pull``.

Argument parsing only; the work and the output are in ``pipeline_view`` (which the
console-script entry also calls directly for ``status`` and ``run``, skipping typer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlcd.cli import pipeline_view as view

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RemoteOpt = Annotated[
    str | None, typer.Option("--remote", "-r", help="Remote name (default: default_remote).")
]
data_app = typer.Typer(help="Track data that no stage produces.", no_args_is_help=True)


def run(
    stages: Annotated[
        list[str] | None, typer.Argument(help="Stages to bring up to date (default: all).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Run the named stages (all if none) even if up to date."
        ),
    ] = False,
    force_upstream: Annotated[
        bool,
        typer.Option("--force-upstream", help="Also force every stage the named stages depend on."),
    ] = False,
    single: Annotated[
        bool,
        typer.Option(
            "--single", "-s", help="Run only the named stages, not their upstream stages."
        ),
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Stages run at once (default: CPU count).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would run or be restored; do nothing.")
    ] = False,
    executor: Annotated[
        str, typer.Option("--executor", help="Where commands run: local or ray.")
    ] = "local",
    as_json: JsonOpt = False,
) -> None:
    """Run stale stages and their dependents; restore cached ones. Exit 3 if a stage fails."""
    view.run_stages(stages, force, jobs, dry_run, executor, as_json, force_upstream, single)


def status(
    stages: Annotated[
        list[str] | None, typer.Argument(help="Stages to check (default: all).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if anything is stale or modified.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show stale stages and changed tracked data, and why."""
    view.show_status(stages, check, as_json)


def dag(
    fmt: Annotated[str, typer.Option("--format", help="text, mermaid or json.")] = "text",
) -> None:
    """Print the stage graph."""
    view.show_dag(fmt)


@data_app.command("add")
def data_add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to track.")],
    as_json: JsonOpt = False,
) -> None:
    """Store files or folders by content and write PATH.mlcd pointers to commit."""
    view.add_data_paths(paths, as_json)


@data_app.command("status")
def data_status(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if anything changed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare tracked data with its pointer files."""
    view.show_data_status(check, as_json)


@data_app.command("from-log")
def data_from_log(
    model: Annotated[str, typer.Argument(help="The model whose prediction log is read.")],
    path: Annotated[Path, typer.Argument(help="The Parquet file to write (inside the project).")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Predictions made since: a duration back (30d) or a date."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Predictions before (and labels received by) this time."),
    ] = None,
    labelled_only: Annotated[
        bool, typer.Option("--labelled-only", help="Only rows that have a feedback label.")
    ] = False,
    sample: Annotated[
        int | None, typer.Option("--sample", help="Keep N rows (a seeded hash of the id).")
    ] = None,
    stratify: Annotated[
        str | None,
        typer.Option("--stratify", help="Equal rows per value of COL (with --sample: N in all)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Label column name (default: models.MODEL.target)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the prediction log joined with feedback as a tracked training dataset."""
    from mlcd.cli.logdata_view import from_log

    from_log(model, path, since, until, labelled_only, sample, stratify, seed, label, as_json)


@data_app.command("import")
def data_import(
    url: Annotated[str, typer.Argument(help="s3://..., https://..., or a database URL.")],
    path: Annotated[Path, typer.Argument(help="Where the data goes in the project.")],
    query: Annotated[
        str | None, typer.Option("--query", help="For a database URL: the query to store.")
    ] = None,
    freshness: Annotated[
        str | None,
        typer.Option("--freshness", help="A cheap query that changes when the data does."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read data from outside the project and track it with a pointer that names its source
    (credentials as ${NAME}, from the environment)."""
    from mlcd.cli.logdata_view import import_source

    import_source(url, path, query, freshness, as_json)


@data_app.command("update")
def data_update(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Imported data to refresh (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read imported data again from its source; re-track what changed."""
    from mlcd.cli.logdata_view import update_sources

    update_sources([str(p) for p in paths or []], as_json)


@data_app.command("validate")
def data_validate(
    targets: Annotated[
        list[str] | None, typer.Argument(help="Datasets (names or paths under data:); all.")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write a JUnit XML report here (CI).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check datasets against their contracts (data: in mlcd.yaml); exit 1 on a failed check."""
    from mlcd.cli.logdata_view import validate_data

    validate_data(targets or [], junit, as_json)


@data_app.command("windows")
def data_windows(
    model: Annotated[str, typer.Argument(help="The model whose data windows are listed.")],
    role: Annotated[
        str | None, typer.Option("--role", help="Only 'eval' or only 'train' windows.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a model's data windows: eval data checked by the no-forgetting gate, and the
    labelled log each retrain took as new (replayed later)."""
    from mlcd.cli.logdata_view import show_windows

    show_windows(model, role, as_json)


@data_app.command("add-window")
def data_add_window(
    model: Annotated[str, typer.Argument(help="The model the window belongs to.")],
    path: Annotated[Path, typer.Argument(help="A table file (Parquet, CSV, JSON lines).")],
    role: Annotated[
        str, typer.Option("--role", help="'eval' (held-out, gated) or 'train' (replayed).")
    ] = "eval",
    name: Annotated[str | None, typer.Option("--name", help="A name for reports.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a data file as a window of MODEL (e.g. the original regime's held-out data)."""
    from mlcd.cli.logdata_view import add_window

    add_window(model, path, role, name, as_json)


def push(
    remote: RemoteOpt = None,
    all_entries: Annotated[
        bool, typer.Option("--all", help="Push every run-cache entry, not just mlcd.lock's.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send objects (mlcd.lock outputs, tracked data) and run-cache entries to a remote."""
    view.push_objects(remote, all_entries, as_json)


def pull(
    remote: RemoteOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files modified in the workspace.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch run-cache entries and objects from a remote; restore missing data and outputs."""
    view.pull_objects(remote, force, as_json)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("run")(run)
    app.command("status")(status)
    app.command("dag")(dag)
    app.add_typer(data_app, name="data")
    app.command("push")(push)
    app.command("pull")(pull)
