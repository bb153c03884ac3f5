"""``mlcd exp branch|push|pull|list-remote``: keeping and sharing experiments.

Argument parsing and rendering only; the work is in ``mlcd.experiments.branch`` and
``mlcd.experiments.share``. The commands join the ``exp`` group of ``mlcd.cli.exp_cmd``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RemoteOpt = Annotated[
    str | None, typer.Option("--remote", "-r", help="Remote name (default: default_remote).")
]
RefsArg = Annotated[
    list[str] | None, typer.Argument(help="Experiment names, run ids or id prefixes.")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every experiment.")]


def branch_command(
    ref: Annotated[str, typer.Argument(help="The experiment's name or run id.")],
    branch: Annotated[str, typer.Argument(help="The new git branch's name.")],
    as_json: JsonOpt = False,
) -> None:
    """Make a git branch with the experiment's params and mlcd.lock on its base commit; the
    work tree, index and current branch are not touched."""
    from mlcd.experiments.branch import branch_experiment
    from mlcd.project import Project

    with Project.open() as project:
        done = branch_experiment(project.root, project.store, project.objects, ref, branch)
    emit(
        done,
        as_json,
        lambda out: out.print(
            f"branch {done['branch']} ({done['commit'][:12]}) holds experiment {done['name']} "
            f"on {done['base'][:12]}; 'git checkout {done['branch']}' then 'mlcd run' restores "
            "its outputs"
        ),
    )


def _render(report: dict[str, Any], verb: str) -> Any:
    def render(out: Any) -> None:
        for item in report["done"]:
            out.print(f"{verb} experiment {item['name']} ({item['id'][:12]})")
        for item in report["present"]:
            out.print(f"experiment {item['name']} ({item['id'][:12]}) was there already")
        for item in report["skipped"]:
            out.print(f"skipped experiment {item['name']}: {item['reason']}")
        out.print(
            f"{report['objects_copied']} object(s) copied ({report['objects_present']} already "
            f"there), {report['entries_copied']} run-cache entr(y/ies); remote {report['remote']}"
        )

    return render


def _finish(report: Any, verb: str, as_json: bool) -> None:
    """Print a push or pull report; raise its error (exit code) when some were refused."""
    emit(report.to_dict(), as_json, _render(report.to_dict(), verb))
    error = report.error(verb)
    if error is not None:
        raise error


def push_command(
    refs: RefsArg = None,
    every: AllOpt = False,
    remote: RemoteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send experiments (their records, objects and run-cache entries) to a remote."""
    from mlcd.experiments.share import push_experiments
    from mlcd.project import Project

    with Project.open() as project:
        target = project.remote(remote)
        report = push_experiments(project.store, project.objects, target, refs or (), every)
    _finish(report, "pushed", as_json)


def pull_command(
    refs: RefsArg = None,
    every: AllOpt = False,
    remote: RemoteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import experiments from a remote, with their objects; then 'mlcd exp show/apply'."""
    from mlcd.experiments.share import pull_experiments
    from mlcd.project import Project

    with Project.open() as project:
        source = project.remote(remote)
        report = pull_experiments(project.store, project.objects, source, refs or (), every)
    _finish(report, "pulled", as_json)


def list_remote_command(remote: RemoteOpt = None, as_json: JsonOpt = False) -> None:
    """The experiments a remote holds, newest first."""
    from mlcd.cli.output import table
    from mlcd.experiments.share import remote_experiments
    from mlcd.project import Project

    with Project.open() as project:
        found = remote_experiments(project.remote(remote))
    rows = [[e["name"], e["id"][:12], e["status"]] for e in found]
    emit(
        found,
        as_json,
        lambda out: out.print(table("Experiments on the remote", ["name", "id", "status"], rows)),
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the ``exp`` group (the root ``app`` is not used)."""
    from mlcd.cli.exp_cmd import exp_app

    exp_app.command("branch")(branch_command)
    exp_app.command("push")(push_command)
    exp_app.command("pull")(pull_command)
    exp_app.command("list-remote")(list_remote_command)
