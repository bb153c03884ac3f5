"""``mlcd doctor``: check the database, the objects and the lock against each other."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Check the database, every object and mlcd.lock against each other. Exit 1 on a problem."""
    from mlcd.doctor import diagnose
    from mlcd.errors import CheckFailed, MlcdError
    from mlcd.project import Project

    with Project.open() as project:
        remote, note = None, None
        if project.config.remotes:
            try:
                remote = project.remote()
            except MlcdError as exc:
                note = f"the remote was not asked about missing objects: {exc.message}"
        report = diagnose(project.root, project.config, project.objects, remote)
        if note:
            report.notes.append(note)

    def render(out: Any) -> None:
        from rich.markup import escape

        checked = ", ".join(f"{count} {what}" for what, count in report.checked.items())
        out.print(f"checked: {checked}")
        for note in report.notes:
            out.print(f"  note: {escape(note)}")
        for problem in report.problems:
            out.print(f"  [red]✗[/] {problem.area}: {escape(problem.message)}")
            out.print(f"    fix: {escape(problem.fix)}")
        if report.healthy:
            out.print("[green]no problem found[/]")

    emit(report.to_dict(), as_json, render)
    if not report.healthy:
        raise CheckFailed(
            f"mlcd doctor found {len(report.problems)} problem(s)",
            hint="each one above says how to fix it",
        )


def register(app: typer.Typer) -> None:
    """Attach ``doctor`` to the root app."""
    app.command("doctor")(doctor)
