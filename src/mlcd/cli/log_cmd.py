"""``mlcd log``: maintenance of the prediction log (compaction into daily files)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, table
from mlcd.cli.step_progress import step_progress

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

log_app = typer.Typer(
    help="The prediction log: compact its segments into daily files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@log_app.command("compact")
def compact(
    model: Annotated[
        str | None, typer.Argument(help="Only this model (default: every model).")
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Only days before this date (2024-05-01) or duration back (7d). "
            "Default: today, which servers are still writing.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be merged; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge each model/version/day's segments into one daily Parquet file (idempotent)."""
    import time

    from mlcd.durations import parse_since
    from mlcd.logdata.compact import compact_log
    from mlcd.project import Project

    cutoff = parse_since(before, time.time()) if before else None
    with Project.open() as project, step_progress("log compact", not as_json) as status:
        report = compact_log(
            project.store, project.root, model, before=cutoff, dry_run=dry_run, progress=status
        )
    data = report.to_dict()

    def render(out: Any) -> None:
        if not report.days:
            out.print("nothing to compact: every day has at most one file")
        else:
            rows = [
                [d.model, "" if d.version is None else f"v{d.version}", d.day,
                 str(d.segments), f"{d.rows:,}", d.status + (f": {d.reason}" if d.reason else "")]
                for d in report.days
            ]  # fmt: skip
            out.print(table("log compact", ["model", "version", "day", "segments", "rows",
                                            "status"], rows))  # fmt: skip
        days = report.days if dry_run else report.compacted
        out.print(
            f"{'would merge' if dry_run else 'merged'} {sum(d.segments for d in days)} "
            f"segment(s) into {len(days)} daily file(s); "
            f"{data['deleted_files']} replaced file(s) deleted",
            markup=False,
            highlight=False,
        )

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    """Attach ``mlcd log`` to the root app."""
    app.add_typer(log_app, name="log")
