"""``mlcd import``: bring an existing DVC project or MLflow store into mlcd.

Each importer's command is a thin wrapper in its own module (``import_dvc_cmd``,
``import_mlflow_cmd``): the work lives in ``mlcd.adopt``.
"""

from __future__ import annotations

import typer

import_app = typer.Typer(
    help="Bring an existing DVC project or MLflow tracking store into mlcd, in one command.",
    no_args_is_help=True,
)

#: The modules that attach their command to ``import_app`` when imported.
IMPORTERS = ("import_dvc_cmd", "import_mlflow_cmd")


def register(app: typer.Typer) -> None:
    """Attach ``import`` (and each importer's command) to the root app."""
    import importlib

    for name in IMPORTERS:
        importlib.import_module(f"mlcd.cli.{name}")
    app.add_typer(import_app, name="import")
