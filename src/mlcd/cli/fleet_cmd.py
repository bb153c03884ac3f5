"""``mlcd fleet``: the serving processes that share this project's store, and what they serve."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, table


def fleet_command(
    model: Annotated[
        str | None, typer.Argument(help="Only the replicas serving this model.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show every serving replica (host:pid) seen in the store: versions, traffic, last seen."""
    from mlcd.project import Project
    from mlcd.serve.fleet import describe, totals
    from mlcd.store import fleet

    with Project.open() as project:
        with project.store.read() as conn:
            rows = fleet.replicas(conn, model)
        replicas = describe(rows, project.config.serve.fleet_interval_s)
    sums = totals(replicas)
    data = {"model": model, "replicas": replicas, "totals": sums}

    def render(out: Any) -> None:
        if not replicas:
            out.print("no serving replica has reported to this store")
            return
        out.print(
            table(
                None,
                ["model", "replica", "state", "primary", "canary", "requests", "errors", "seen"],
                [
                    [
                        r["model"],
                        r["replica"],
                        "alive" if r["alive"] else "stale",
                        _version(r, "primary"),
                        _version(r, "canary"),
                        r["requests"],
                        r["errors"],
                        f"{r['age_s']:.1f} s ago",
                    ]
                    for r in replicas
                ],
            )
        )
        serving = ", ".join(
            f"{count} on v{version}" if version != "none" else f"{count} with none loaded"
            for version, count in sorted(sums["primary_versions"].items())
        )
        out.print(
            f"fleet: {sums['alive']} alive, {sums['stale']} stale; {sums['requests']} requests, "
            f"{sums['errors']} errors; primary {serving or '-'}"
        )

    emit(data, as_json, render)


def _version(row: dict[str, Any], role: str) -> str:
    version = (row.get("versions") or {}).get(role)
    return "" if version is None else f"v{version}"


def register(app: typer.Typer) -> None:
    app.command("fleet")(fleet_command)
