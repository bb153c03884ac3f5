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
        return datetime.fromtimestamp(at, tz=UTC).strftime("%m-%d %H:%M:%S")

    def render(out: Any) -> None:
        if not rows:
            out.print("no events")
            return
        out.print(
            table(
                None,
                ["when (UTC)", "kind", "model", "version", "alias", "reason"],
                [
                    [
                        when(r["at"]),
                        r["kind"],
                        r["model"],
                        ""
                        if r["version"] is None
                        else (
                            f"{r['from_version']}→{r['version']}"
                            if r["from_version"]
                            else r["version"]
                        ),
                        r["alias"],
                        r["reason"],
                    ]
                    for r in rows
                ],
            )
        )

    emit(rows, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("events")(events_command)
