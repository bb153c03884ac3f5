"""``mlcd import mlflow``: the command; the work lives in ``mlcd.adopt``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.import_cmd import import_app
from mlcd.cli.output import emit

__all__ = ["import_app"]


@import_app.command("mlflow")
def import_mlflow(
    tracking_uri: Annotated[
        str,
        typer.Option(
            "--tracking-uri",
            envvar="MLFLOW_TRACKING_URI",
            help="The MLflow store: sqlite:///mlflow.db, postgresql://..., http://host:5000.",
        ),
    ],
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", "-e", help="Only this experiment (repeatable)."),
    ] = None,
    models: Annotated[
        bool, typer.Option("--models", help="Import registered models, versions and aliases.")
    ] = False,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Only this registered model (repeatable; implies --models)."),
    ] = None,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Unpickle MLflow's pickled scikit-learn models to convert them to skops "
            "(pickles run code: only for a store you trust).",
        ),
    ] = False,
    no_artifacts: Annotated[
        bool, typer.Option("--no-artifacts", help="Leave run artifacts in MLflow.")
    ] = False,
    registry_uri: Annotated[
        str | None,
        typer.Option("--registry-uri", help="The MLflow registry (default: the tracking URI)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Import an MLflow store's runs (and registered models) into this project.

    Importing again adds only what is new; an import stopped half-way is completed by running
    it again (nothing is ever half-written).
    """
    from mlcd.adopt.mlflow_import import import_mlflow as run_import
    from mlcd.cli.step_progress import step_progress
    from mlcd.project import Project

    with Project.open() as project, step_progress("mlflow import", not as_json) as progress:
        summary = run_import(
            project.store,
            project.objects,
            tracking_uri,
            experiments=experiment or (),
            models=models,
            model_names=model or (),
            trust=trust,
            artifacts=not no_artifacts,
            registry_uri=registry_uri,
            progress=progress,
        )
    data = summary.to_dict()

    def render(out: Any) -> None:
        runs = data["runs"]
        out.print(
            f"[bold]imported from {data['tracking_uri']}[/] in {data['seconds']:.1f}s: "
            f"{len(data['experiments'])} experiment(s), {runs['found']} run(s) found"
        )
        out.print(
            f"  runs: {runs['imported']} imported ({runs['replaced']} replaced), "
            f"{runs['already_imported']} already there; {runs['metric_points']} metric points, "
            f"{runs['artifacts']} artifact files"
        )
        for entry in data["models"]:
            if entry["error"]:
                out.print(f"  model {entry['name']}: [red]{entry['error']}[/]")
                continue
            imported = ", ".join(
                f"{v['mlflow_version']}->{v['version']}"
                + (" (needs trust)" if v["needs_trust"] else "")
                for v in entry["imported"]
            )
            out.print(
                f"  model {entry['name']}: versions {imported or 'none new'}"
                f" ({entry['already_imported']} already there)"
                + (
                    "; aliases " + ", ".join(f"{a}->{v}" for a, v in entry["aliases_set"].items())
                    if entry["aliases_set"]
                    else ""
                )
            )
            for alias, where in entry["aliases_kept"].items():
                out.print(
                    f"    alias {alias} kept at version {where['mlcd']} "
                    f"(MLflow points at what is version {where['mlflow']} here)"
                )
            for refused in entry["refused"]:
                what = (
                    f"version {refused['version']}"
                    if "version" in refused
                    else f"alias {refused['alias']}"
                )
                out.print(f"    [yellow]{what} not imported:[/] {refused['reason']}")
        notes = {v["note"] for e in data["models"] for v in e["imported"] if v["note"]}
        for note in sorted(notes):
            out.print(f"  note: {note}")

    emit(data, as_json, render)
