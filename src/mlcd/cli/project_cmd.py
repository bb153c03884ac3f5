"""Project commands: ``init``, ``config validate|show``, ``gc``, ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlcd.cli.output import console, emit

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
config_app = typer.Typer(help="Check and show mlcd.yaml.", no_args_is_help=True)


def init(
    directory: Annotated[Path, typer.Argument(help="Project folder (created if missing).")] = Path(
        "."
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    ci: Annotated[
        str | None, typer.Option("--ci", help="Also write a CI workflow: github or gitlab.")
    ] = None,
    branch: Annotated[str, typer.Option(help="Default branch, where CI promotes.")] = "main",
    as_json: JsonOpt = False,
) -> None:
    """Create mlcd.yaml, params.yaml, the .gitignore entry and optionally a CI workflow."""
    from mlcd.scaffold import init_project

    if ci is not None:
        from mlcd.ci.templates import WORKFLOWS

        if ci not in WORKFLOWS:
            from mlcd.errors import UsageError

            raise UsageError(f"unknown --ci {ci!r}", hint=f"use one of: {', '.join(WORKFLOWS)}")
    result = init_project(directory, force=force)
    if ci is not None:
        from mlcd.ci.templates import write_workflow

        path, written = write_workflow(directory, ci, force=force, branch=branch)
        relative = path.relative_to(directory).as_posix()
        (result.created if written else result.kept).append(relative)

    def render(out: Any) -> None:
        for name in result.created:
            out.print(f"[green]created[/] {name}")
        for name in result.kept:
            out.print(f"[dim]kept[/]    {name} (exists; --force overwrites)")
        if result.dvc_project:
            out.print(
                "[yellow]found dvc.yaml:[/] 'mlcd import dvc' translates its stages into "
                "mlcd.yaml and imports dvc.lock and the DVC cache, so nothing re-runs"
            )
        out.print(
            f"Project ready in {result.root}. Next: declare stages in mlcd.yaml, then 'mlcd run'."
        )

    emit(result.to_dict(), as_json, render)


@config_app.command("validate")
def config_validate(
    directory: Annotated[Path, typer.Option("--dir", "-C", help="Project folder.")] = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Validate mlcd.yaml: syntax, keys, types, references, and every check 'run' makes.

    Exit 2 if invalid.
    """
    from mlcd.config import CONFIG_FILE, load_config
    from mlcd.pipeline.runner import check_pipeline
    from mlcd.pipeline.snapshot import load_snapshot

    config = load_config(directory)
    check_pipeline(load_snapshot(directory.resolve(), use_cache=False))
    summary = {
        "valid": True,
        "file": str((directory / CONFIG_FILE).absolute()),
        "stages": list(config.stages),
        "models": list(config.models),
        "remotes": list(config.remotes),
    }
    emit(summary, as_json, lambda out: out.print(f"[green]ok[/] {summary['file']} is valid"))


@config_app.command("show")
def config_show(
    directory: Annotated[Path, typer.Option("--dir", "-C", help="Project folder.")] = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Print the effective configuration, defaults and MLCD_* overrides applied."""
    from mlcd.config import load_config
    from mlcd.secrets import known_secrets, mask_obj

    config = mask_obj(load_config(directory).model_dump(mode="json"), known_secrets())
    if as_json:
        emit(config, True)
    else:
        import yaml

        console().print(yaml.safe_dump(config, sort_keys=False), markup=False)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also check every object and drop corrupt ones.")
    ] = False,
    grace: Annotated[
        float, typer.Option(help="Keep unreferenced objects younger than this many seconds.")
    ] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove objects nothing references (runs, cache, models, mlcd.lock). Exit 1 if corrupt found."""
    from mlcd.errors import CheckFailed
    from mlcd.gc import collect_garbage
    from mlcd.project import Project

    with Project.open() as project:
        report = collect_garbage(
            project.store,
            project.objects,
            extra_roots=[project.root / "mlcd.lock"],
            dry_run=dry_run,
            verify=verify,
            grace_s=grace,
            log_root=project.root,
            log_retention=project.config.monitor.log_retention,
        )

    def render(out: Any) -> None:
        verb = "would remove" if dry_run else "removed"
        if report.log is not None:
            log = report.log
            out.print(
                f"prediction log: {'would drop' if dry_run else 'dropped'} {log['segments']} "
                f"segment(s), {log['rows']} rows, older than monitor.log_retention"
            )
            for path in log["paths"][:20] if dry_run else []:
                out.print(f"  {path}", markup=False, highlight=False)
        out.print(
            f"{report.stored} objects stored, {report.referenced} referenced; "
            f"{verb} {len(report.removed)}; kept {report.kept_recent} recent"
        )
        for digest in report.corrupt:
            out.print(f"[red]corrupt[/] {digest} ({'would drop' if dry_run else 'dropped'})")
        if report.missing:
            out.print(
                f"[yellow]{len(report.missing)} referenced objects are missing[/] (try 'mlcd pull')"
            )

    emit(report.to_dict(), as_json, render)
    if report.corrupt:
        raise CheckFailed(
            f"{len(report.corrupt)} corrupt object(s): {', '.join(d[:12] for d in report.corrupt)}",
            hint="run 'mlcd pull' or re-run the stages that made them",
        )


def verify(as_json: JsonOpt = False) -> None:
    """Check every stored object against its digest. Exit 1 if any is corrupt."""
    from mlcd.errors import CheckFailed
    from mlcd.gc import verify_objects
    from mlcd.project import Project

    with Project.open() as project:
        bad = verify_objects(project.objects)
    emit(
        {"corrupt": bad},
        as_json,
        lambda out: out.print("[green]all objects verified[/]" if not bad else ""),
    )
    if bad:
        raise CheckFailed(
            "corrupt objects: " + ", ".join(bad),
            hint="run 'mlcd gc --verify' to drop them, then 'mlcd pull' or re-run their stages",
        )


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("init")(init)
    app.add_typer(config_app, name="config")
    app.command("gc")(gc)
    app.command("verify")(verify)
