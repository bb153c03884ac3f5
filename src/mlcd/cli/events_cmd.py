"""``mlcd events``: the audit trail (alias moves, gates, triggers, retrains, alerts)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, table


def events_command(
    model: Annotated[str | None, typer.Argument(help="Only this model's events.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind; '*' is a wildcard, e.g. 'retrain.*'.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the audit trail, newest first."""
    from datetime import UTC, datetime

    from mlcd.project import Project
    from mlcd.store import events

    with Project.open() as project, project.store.read() as conn:
        rows = events.query(conn, model=model, kind=kind, limit=limit)

    def when(at: float) -> str:
        return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")

    def render(out: Any) -> None:
        if not rows:
            out.print("no events")
            return
        out.print(
            table(
                None,
                ["when (UTC)", "kind", "model", "version", "alias", "from", "actor", "reason"],
                [
                    [
                        when(r["at"]),
                        r["kind"],
                        r["model"],
                        r["version"],
                        r["alias"],
                        r["from_version"],
                        r["actor"],
                        r["reason"],
                    ]
                    for r in rows
                ],
            )
        )

    emit(rows, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("events")(events_command)
