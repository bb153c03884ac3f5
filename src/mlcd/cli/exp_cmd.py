"""``mlcd exp``: experiments — run with overridden params, show, apply, remove.

Argument parsing and rendering only; the work is in ``mlcd.experiments``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, table

exp_app = typer.Typer(
    help="Experiments: the pipeline with overridden params, outside the work tree.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _when(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@exp_app.command("run")
def run_command(
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set-param", "-S", help="[FILE:]KEY=VALUE: a param to override (repeatable)."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="The experiment's name (default: exp-ID).")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the workspace (.mlcd/exp/ID/) after the run.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Stages run at once (default: CPU count).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline with overridden params in a workspace; the work tree is not touched.
    Exit 3 if a stage fails."""
    from mlcd.cli.pipeline_progress import Progress
    from mlcd.cli.pipeline_view import _render_run
    from mlcd.errors import StageFailed, UsageError
    from mlcd.experiments import run_experiment
    from mlcd.pipeline.plan import Services
    from mlcd.project import Project

    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})")
    with Project.open() as project:
        progress = Progress(enabled=not as_json)
        try:
            done = run_experiment(
                project.root,
                Services(project.store, project.objects),
                settings or (),
                name,
                keep,
                jobs,
                progress,
            )
        finally:
            progress.stop()
    if as_json:
        emit(done.to_dict(), True)
    else:
        _render_run(done.result)
        typer.echo(f"experiment {done.name} (run {done.result.run_id})")
        if done.workspace is not None:
            typer.echo(f"workspace kept in {done.workspace}")
    if not done.result.ok:
        failed = [s.stage for s in done.result.failed if s.outcome == "failed"]
        raise StageFailed(
            f"experiment {done.name}: stage(s) failed: {', '.join(failed) or 'none'}",
            hint="run it with --keep to look at the workspace, fix the stage, run it again",
        )


def _markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(columns: list[str], rows: list[list[str]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


@exp_app.command("show")
def show_command(
    sort_by: Annotated[
        str | None,
        typer.Option("--sort-by", help="metrics.NAME, params.NAME, name, status or created."),
    ] = None,
    ascending: Annotated[
        bool, typer.Option("--asc", help="With --sort-by: smallest first.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    markdown: Annotated[bool, typer.Option("--md", help="Print Markdown.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Experiments, newest first, with their params and metrics against the baseline."""
    from mlcd.experiments import list_experiments
    from mlcd.project import Project

    with Project.open() as project, project.store.read() as conn:
        shown = list_experiments(project.root, conn, sort_by, ascending)
    if as_json:
        emit(shown.to_dict(), True)
        return
    columns = [
        "name",
        "id",
        "created",
        "status",
        *(f"params.{k}" for k in shown.param_keys),
        *(f"metrics.{k}" for k in shown.metric_keys),
    ]
    base = shown.baseline
    rows = [
        [
            "workspace (baseline)",
            (base["run_id"] or "")[:12],
            "",
            "",
            *(_cell(base["params"].get(k)) for k in shown.param_keys),
            *(_cell(base["metrics"].get(k)) for k in shown.metric_keys),
        ]
    ]
    for row in shown.experiments:
        rows.append(
            [
                row.name,
                row.id[:12],
                _when(row.created),
                row.status,
                *(_cell(row.params.get(k)) for k in shown.param_keys),
                *(_cell(row.metrics.get(k)) for k in shown.metric_keys),
            ]
        )
    if as_csv:
        typer.echo(_csv(columns, rows), nl=False)
    elif markdown:
        typer.echo(_markdown(columns, rows), nl=False)
    else:
        emit(None, False, lambda out: out.print(table("Experiments", columns, rows)))


@exp_app.command("apply")
def apply_command(
    ref: Annotated[str, typer.Argument(help="The experiment's name or run id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite params files with uncommitted changes.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write an experiment's params and mlcd.lock into the work tree and restore its outputs."""
    from mlcd.experiments import apply_experiment
    from mlcd.project import Project

    with Project.open() as project:
        done = apply_experiment(project.root, project.store, project.objects, ref, force)
    emit(
        done,
        as_json,
        lambda out: out.print(
            f"applied experiment {done['name']}: wrote {', '.join(done['params_files'])} and "
            f"mlcd.lock, restored {len(done['restored'])} output(s)"
        ),
    )


@exp_app.command("remove")
def remove_command(
    refs: Annotated[list[str], typer.Argument(help="Experiment names or run ids.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete experiments' run records (their objects stay until 'mlcd gc')."""
    from mlcd.experiments import find_experiment, remove_experiment
    from mlcd.project import Project

    with Project.open() as project:
        with project.store.read() as conn:  # every name must exist before any is removed
            for ref in refs:
                find_experiment(conn, ref)
        removed = [remove_experiment(project.store, ref) for ref in refs]
    emit(
        removed,
        as_json,
        lambda out: out.print("\n".join(f"removed experiment {r['name']}" for r in removed)),
    )


def register(app: typer.Typer) -> None:
    """Attach ``exp`` to the root app."""
    app.add_typer(exp_app, name="exp")
