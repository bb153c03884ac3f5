"""``mlcd tokens``: bearer tokens for the HTTP faces (create, list, revoke)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import console, emit, err_console, table

tokens_app = typer.Typer(
    help="Bearer tokens for 'mlcd serve': create (shown once), list, revoke.",
    no_args_is_help=True,
)


def _when(at: float | None) -> str:
    from datetime import UTC, datetime

    return "" if at is None else datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M")


@tokens_app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="A name for the token; it is the audit actor.")],
    role: Annotated[
        str, typer.Option(help="predict, feedback, read, write (includes read) or admin (all).")
    ],
    expires: Annotated[
        str | None, typer.Option(help="Lifetime such as 12h, 30d or 2w (default: none).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Create a token and print its secret once (only a hash of it is stored)."""
    import time

    from mlcd.project import Project
    from mlcd.retrain.timing import parse_duration
    from mlcd.store import tokens

    expires_at = time.time() + parse_duration(expires) if expires else None
    with Project.open() as project, project.store.write() as conn:
        secret = tokens.create(conn, name, role, expires_at=expires_at)
    data = {"name": name, "role": role, "expires_at": expires_at, "token": secret}

    def render(out: Any) -> None:
        out.print(secret, markup=False, highlight=False, soft_wrap=True)
        until = f", expires {_when(expires_at)} UTC" if expires_at else ""
        err_console().print(
            f"token {name!r} ({role}{until}): copy it now, it is not shown again. "
            "Send it as 'Authorization: Bearer <token>'.",
            markup=False,
        )

    emit(data, as_json, render)


@tokens_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List tokens with their role and state (never their secrets)."""
    from mlcd.project import Project
    from mlcd.store import tokens

    with Project.open() as project, project.store.read() as conn:
        rows = tokens.list_tokens(conn)

    def render(out: Any) -> None:
        if not rows:
            out.print("no tokens")
            return
        out.print(
            table(
                None,
                ["name", "role", "state", "created (UTC)", "expires (UTC)", "created by"],
                [
                    [
                        r["name"],
                        r["role"],
                        r["state"],
                        _when(r["created_at"]),
                        _when(r["expires_at"]),
                        r["created_by"] or "",
                    ]
                    for r in rows
                ],
            )
        )

    emit(rows, as_json, render)


@tokens_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token (running servers refuse it within a few seconds)."""
    from mlcd.project import Project
    from mlcd.store import tokens

    with Project.open() as project, project.store.write() as conn:
        tokens.revoke(conn, name)
    console().print(f"revoked token {name!r}", markup=False)


def register(app: typer.Typer) -> None:
    """Attach ``tokens`` to the root app."""
    app.add_typer(tokens_app, name="tokens")
