"""``mlcd import dvc``: the command; the work lives in ``mlcd.adopt``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlcd.cli.import_cmd import import_app
from mlcd.cli.output import emit

__all__ = ["import_app"]


@import_app.command("dvc")
def import_dvc(
    path: Annotated[Path, typer.Argument(help="The DVC project's root.")] = Path("."),
    remote: Annotated[
        str | None,
        typer.Option("--remote", help="Read objects from this DVC remote, not the local cache."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the stages of an existing, different mlcd.yaml."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the translated mlcd.yaml; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Turn a DVC project into an mlcd project: dvc.yaml, dvc.lock, .dvc files and cache.

    Every object is checked against its MD5 on the way in. Stages whose dvc.lock result is
    current are restored by the next 'mlcd run' instead of running; importing again adds
    nothing.
    """
    from mlcd.adopt.dvc_import import import_dvc as run_import
    from mlcd.cli.step_progress import step_progress

    with step_progress("dvc import", not as_json) as progress:
        summary = run_import(path, remote=remote, force=force, dry_run=dry_run, progress=progress)
    data = summary.to_dict()
    if dry_run:
        data["mlcd_yaml"] = summary.config_text

    def render(out: Any) -> None:
        if dry_run:
            out.print(summary.config_text, markup=False, highlight=False)
            return
        imported = [s for s in data["stages"] if s["imported"]]
        out.print(
            f"[bold]imported {data['root']}[/] from DVC's {data['source']} in "
            f"{data['seconds']:.1f}s: {len(imported)} of {len(data['stages'])} stage(s) "
            f"restorable, {len(data['pointers'])} tracked path(s), "
            f"{data['objects']['files']} file(s) verified"
        )
        out.print("  mlcd.yaml " + ("written" if data["config_written"] else "already up to date"))
        for stage in data["stages"]:
            if not stage["imported"]:
                out.print(f"  stage {stage['stage']}: [yellow]{stage['reason']}[/]")
        for pointer in data["pointers"]:
            out.print(f"  {pointer['from']} -> {pointer['path']}.mlcd")
        for model in data["models"]:
            out.print(f"  model {model}: declared under models: in mlcd.yaml")
        for note in data["notes"]:
            out.print(f"  note: {note}")
        out.print("Next: 'mlcd status', then 'mlcd run' (it restores instead of re-running).")

    emit(data, as_json, render)
