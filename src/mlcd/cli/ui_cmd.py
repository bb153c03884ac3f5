"""``mlcd ui``: the web UI of the project (the app lives in ``mlcd.ui``)."""

from __future__ import annotations

from typing import Annotated

import typer


def ui(
    host: Annotated[
        str, typer.Option(help="Address to bind (127.0.0.1; beyond it every page needs a token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 5000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="Another Host header to accept (repeatable)."),
    ] = None,
) -> None:
    """Browse runs, compare them, follow models and their aliases, events and the pipeline."""
    import uvicorn

    from mlcd.layout import find_root
    from mlcd.ui.app import create_app

    root = find_root(".")
    app = create_app(root, host=host, extra_hosts=tuple(allowed_host or ()))
    typer.echo(f"mlcd ui for {root}: http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def register(app: typer.Typer) -> None:
    """Attach ``ui`` to the root app."""
    app.command("ui")(ui)
