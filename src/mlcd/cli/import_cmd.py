"""``mlcd import``: bring an existing DVC project or MLflow store into mlcd.

Each importer's command is a thin wrapper: the work lives in ``mlcd.adopt``.
"""

from __future__ import annotations

import typer

import_app = typer.Typer(
    help="Bring an existing DVC project or MLflow tracking store into mlcd, in one command.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Attach ``import`` to the root app."""
    app.add_typer(import_app, name="import")
