"""``mlcd ci``: the pull-request check and the main-branch promotion, in one command.

Argument parsing and output only; the work is ``mlcd.ci.run.run_ci``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def ci(
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Git revision to diff params and metrics against, e.g. origin/main.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the Markdown report (pull-request comment) here."),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write the JUnit XML (one test per gate) here.")
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote", "-r", help="Remote to pull caches from and push to (default: declared)."
        ),
    ] = None,
    promote: Annotated[
        bool,
        typer.Option("--promote", help="Promote a candidate that passes the gates to champion."),
    ] = False,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Gate only this model (repeatable; default: all)."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Stages run at once (default: CPU count).")
    ] = None,
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap resamples for the intervals.")
    ] = 1000,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow pickle-based model packages.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Pull caches, run the pipeline, gate each model against champion, diff, report, push.

    Exit codes: 0 passed; 1 a gate failed; 2 configuration or usage error (bad --base,
    unknown --model, missing eval_data); 3 a stage or another step failed.
    """
    from rich.markup import escape

    from mlcd.ci.run import CiOptions, run_ci
    from mlcd.cli.output import emit, err_console
    from mlcd.cli.pipeline_progress import Progress
    from mlcd.project import Project

    options = CiOptions(
        base=base,
        models=tuple(model or ()),
        promote=promote,
        jobs=jobs,
        resamples=resamples,
        trusted=trust,
        report=report,
        junit=junit,
    )
    console = err_console()

    def say(line: str) -> None:
        console.print(f"[bold]mlcd ci[/]: {escape(line)}")

    progress = Progress(enabled=True)
    with Project.open() as project:
        target = project.remote(remote) if remote or project.config.remotes else None
        try:
            result = run_ci(
                project.root,
                project.config,
                project.store,
                project.objects,
                target,
                options,
                progress,
                say,
            )
        finally:
            progress.stop()

    def render(out: Any) -> None:
        from mlcd.ci.report import render_markdown

        out.print(render_markdown(result), markup=False, highlight=False)
        for kind, path in result.reports.items():
            out.print(f"{kind} report: {path}", markup=False)

    emit(result.to_dict(), as_json, render)
    result.check()


def register(app: typer.Typer) -> None:
    """Attach ``ci`` to the root app."""
    app.command("ci")(ci)
