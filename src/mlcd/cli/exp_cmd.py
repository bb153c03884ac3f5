"""``mlcd exp``: experiments — run (now or queued), queue and workers, sweeps, show, apply.

Argument parsing and rendering only; the work is in ``mlcd.experiments``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, table

exp_app = typer.Typer(
    help="Experiments: the pipeline with overridden params, outside the work tree.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ExecutorOpt = Annotated[
    str, typer.Option("--executor", help="Where stages run: local or ray (the pipeline's).")
]
queue_app = typer.Typer(help="The experiment queue: list, logs, kill, remove.")
exp_app.add_typer(queue_app, name="queue")


def _when(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@exp_app.command("run")
def run_command(
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set-param", "-S", help="[FILE:]KEY=VALUE: a param to override (repeatable)."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="The experiment's name (default: exp-ID).")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the workspace (.mlcd/exp/ID/) after the run.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Stages run at once (default: CPU count).")
    ] = None,
    queued: Annotated[
        bool,
        typer.Option("--queue", help="Store it in the queue instead (run by 'mlcd exp start')."),
    ] = False,
    executor: ExecutorOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline with overridden params in a workspace; the work tree is not touched.
    Exit 3 if a stage fails."""
    from mlcd.errors import StageFailed, UsageError
    from mlcd.project import Project

    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})")
    if queued:  # only the queue's row: no pipeline machinery is loaded
        from mlcd.experiments.queue import enqueue_to_store, open_queue_store

        fast = open_queue_store()
        if fast is not None:
            try:
                entry = enqueue_to_store(fast[0], fast[1], settings or (), name, jobs, executor)
            finally:
                fast[1].dispose()
        else:
            with Project.open() as project:
                entry = enqueue_to_store(
                    project.root, project.store, settings or (), name, jobs, executor
                )
        emit(
            entry,
            as_json,
            lambda out: out.print(
                f"queued experiment {entry['name']} ({entry['id'][:12]}); "
                "run the queue with: mlcd exp start"
            ),
        )
        return
    from mlcd.cli.pipeline_progress import Progress
    from mlcd.cli.pipeline_view import _render_run
    from mlcd.experiments import run_experiment
    from mlcd.pipeline.plan import Services

    with Project.open() as project:
        progress = Progress(enabled=not as_json)
        try:
            done = run_experiment(
                project.root,
                Services(project.store, project.objects),
                settings or (),
                name,
                keep,
                jobs,
                progress,
                executor=executor,
            )
        finally:
            progress.stop()
    if as_json:
        emit(done.to_dict(), True)
    else:
        _render_run(done.result)
        typer.echo(f"experiment {done.name} (run {done.result.run_id})")
        if done.workspace is not None:
            typer.echo(f"workspace kept in {done.workspace}")
    if not done.result.ok:
        failed = [s.stage for s in done.result.failed if s.outcome == "failed"]
        raise StageFailed(
            f"experiment {done.name}: stage(s) failed: {', '.join(failed) or 'none'}",
            hint="run it with --keep to look at the workspace, fix the stage, run it again",
        )


def _markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(columns: list[str], rows: list[list[str]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


@exp_app.command("show")
def show_command(
    sort_by: Annotated[
        str | None,
        typer.Option("--sort-by", help="metrics.NAME, params.NAME, name, status or created."),
    ] = None,
    ascending: Annotated[
        bool, typer.Option("--asc", help="With --sort-by: smallest first.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    markdown: Annotated[bool, typer.Option("--md", help="Print Markdown.")] = False,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="Show one sweep's trials, best first by its objective."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Experiments, newest first, with their params and metrics against the baseline."""
    from mlcd.experiments import list_experiments
    from mlcd.project import Project

    if sweep is not None:
        _show_sweep(sweep, as_json, as_csv, markdown)
        return

    with Project.open() as project, project.store.read() as conn:
        shown = list_experiments(project.root, conn, sort_by, ascending)
    if as_json:
        emit(shown.to_dict(), True)
        return
    columns = [
        "name",
        "id",
        "created",
        "status",
        *(f"params.{k}" for k in shown.param_keys),
        *(f"metrics.{k}" for k in shown.metric_keys),
    ]
    base = shown.baseline
    rows = [
        [
            "workspace (baseline)",
            (base["run_id"] or "")[:12],
            "",
            "",
            *(_cell(base["params"].get(k)) for k in shown.param_keys),
            *(_cell(base["metrics"].get(k)) for k in shown.metric_keys),
        ]
    ]
    for row in shown.experiments:
        rows.append(
            [
                row.name,
                row.id[:12],
                _when(row.created),
                row.status,
                *(_cell(row.params.get(k)) for k in shown.param_keys),
                *(_cell(row.metrics.get(k)) for k in shown.metric_keys),
            ]
        )
    if as_csv:
        typer.echo(_csv(columns, rows), nl=False)
    elif markdown:
        typer.echo(_markdown(columns, rows), nl=False)
    else:
        emit(None, False, lambda out: out.print(table("Experiments", columns, rows)))


@exp_app.command("apply")
def apply_command(
    ref: Annotated[str, typer.Argument(help="The experiment's name or run id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite params files with uncommitted changes.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write an experiment's params and mlcd.lock into the work tree and restore its outputs."""
    from mlcd.experiments import apply_experiment
    from mlcd.project import Project

    with Project.open() as project:
        done = apply_experiment(project.root, project.store, project.objects, ref, force)
    emit(
        done,
        as_json,
        lambda out: out.print(
            f"applied experiment {done['name']}: wrote {', '.join(done['params_files'])} and "
            f"mlcd.lock, restored {len(done['restored'])} output(s)"
        ),
    )


@exp_app.command("remove")
def remove_command(
    refs: Annotated[list[str], typer.Argument(help="Experiment names or run ids.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete experiments' run records (their objects stay until 'mlcd gc')."""
    from mlcd.experiments import find_experiment, remove_experiment
    from mlcd.project import Project

    with Project.open() as project:
        with project.store.read() as conn:  # every name must exist before any is removed
            for ref in refs:
                find_experiment(conn, ref)
        removed = [remove_experiment(project.store, ref) for ref in refs]
    emit(
        removed,
        as_json,
        lambda out: out.print("\n".join(f"removed experiment {r['name']}" for r in removed)),
    )


def _services(project: Any) -> Any:
    from mlcd.pipeline.plan import Services

    return Services(project.store, project.objects)


def _entry_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            e["id"][:12],
            e["name"],
            e["status"],
            str(e["attempts"]),
            _when(e["created_at"]),
            " ".join(e["settings"]) or ("(optuna)" if e.get("kind") == "optuna" else ""),
            e.get("worker") or "",
            (e.get("run_id") or "")[:12],
            e.get("error") or "",
        ]
        for e in entries
    ]


_ENTRY_COLUMNS = ["id", "name", "status", "tries", "queued", "settings", "worker", "run", "error"]


def _say_started(done: dict[str, Any]) -> Any:
    def render(out: Any) -> None:
        out.print(table("Experiments", _ENTRY_COLUMNS, _entry_rows(done["entries"])))
        counts = ", ".join(f"{n} {status}" for status, n in sorted(done["counts"].items()))
        out.print(f"{done['workers']} worker(s): {counts or 'nothing ran'}")

    return render


def _raise_if_failed(done: dict[str, Any], what: str) -> None:
    from mlcd.errors import StageFailed

    failed = [e["name"] for e in done["entries"] if e["status"] == "failed"]
    if failed:
        raise StageFailed(
            f"{what}: {len(failed)} experiment(s) failed: {', '.join(failed[:10])}",
            hint="read why with: mlcd exp queue logs NAME",
        )


@exp_app.command("start")
def start_command(
    workers: Annotated[
        int, typer.Option("--jobs", "-j", help="Worker processes, each in its own workspace.")
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Run the queued experiments with N worker processes; returns when the queue is drained.
    Exit 3 if an experiment failed, 2 if the queue is empty."""
    from mlcd.experiments.queue import start_workers
    from mlcd.project import Project

    with Project.open() as project:
        done = start_workers(project.root, _services(project), workers)
    emit(done, as_json, _say_started(done))
    _raise_if_failed(done, "exp start")


@exp_app.command("worker", hidden=True)
def worker_command(
    sweep: Annotated[str | None, typer.Option("--sweep", help="Only this sweep's trials.")] = None,
) -> None:
    """One queue worker (started by 'mlcd exp start' and 'mlcd exp sweep')."""
    from mlcd.experiments.worker import work
    from mlcd.project import Project

    with Project.open() as project:
        work(project.root, _services(project), sweep)


@queue_app.command("list")
def queue_list_command(
    every: Annotated[
        bool, typer.Option("--all", help="Also the ended ones (done, failed, killed).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queued and running experiments, oldest first."""
    from mlcd.experiments.queue import list_queue
    from mlcd.project import Project

    with Project.open() as project:
        entries = list_queue(_services(project), every)
    emit(
        entries,
        as_json,
        lambda out: out.print(table("Experiment queue", _ENTRY_COLUMNS, _entry_rows(entries))),
    )


@queue_app.command("logs")
def queue_logs_command(
    ref: Annotated[str, typer.Argument(help="The entry's id (or prefix) or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Print the log of a queued experiment (what its worker wrote)."""
    from mlcd.experiments.queue import entry_log
    from mlcd.project import Project

    with Project.open() as project:
        entry, text = entry_log(_services(project), ref)
    if as_json:
        emit({"id": entry["id"], "name": entry["name"], "log_path": entry["log_path"],
              "log": text}, True)  # fmt: skip
    else:
        typer.echo(text, nl=False)


@queue_app.command("kill")
def queue_kill_command(
    ref: Annotated[str, typer.Argument(help="The entry's id (or prefix) or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Stop an experiment: a queued one will not run, a running one is stopped by its worker."""
    from mlcd.experiments.queue import kill_entry
    from mlcd.project import Project

    with Project.open() as project:
        entry = kill_entry(_services(project), ref)
    emit(
        entry,
        as_json,
        lambda out: out.print(
            f"killed {entry['name']}"
            if entry["status"] == "killed"
            else f"asked the worker of {entry['name']} to stop it (at its next heartbeat)"
        ),
    )


@queue_app.command("remove")
def queue_remove_command(
    refs: Annotated[
        list[str] | None, typer.Argument(help="Entry ids (or prefixes) or names.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every entry that is not running.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete entries from the queue (not running ones; their runs, if any, stay)."""
    from mlcd.experiments.queue import remove_entries
    from mlcd.project import Project

    with Project.open() as project:
        removed = remove_entries(_services(project), refs or [], every)
    emit(
        removed,
        as_json,
        lambda out: out.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}"),
    )


def _show_sweep(ref: str, as_json: bool, as_csv: bool, markdown: bool) -> None:
    from mlcd.experiments.sweep import sweep_trials
    from mlcd.project import Project

    with Project.open() as project, project.store.read() as conn:
        shown = sweep_trials(conn, ref)
    if as_json:
        emit(shown, True)
        return
    columns, rows = _sweep_rows(shown)
    if as_csv:
        typer.echo(_csv(columns, rows), nl=False)
    elif markdown:
        typer.echo(_markdown(columns, rows), nl=False)
    else:
        sweep = shown["sweep"]
        title = f"Sweep {sweep['name']} ({sweep['strategy']}, {sweep['status']})"
        emit(None, False, lambda out: out.print(table(title, columns, rows)))


def _sweep_rows(shown: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    trials = shown["trials"]
    params = sorted({k for t in trials for k in t["overrides"]})
    metrics = sorted({k for t in trials for k in t["metrics"]})
    columns = ["trial", "name", "id", "status", *params, *metrics]
    rows = [
        [
            _cell(t.get("trial")),
            t["name"],
            t["id"][:12],
            t["status"],
            *(_cell(t["overrides"].get(k)) for k in params),
            *(_cell(t["metrics"].get(k)) for k in metrics),
        ]
        for t in trials
    ]
    for entry in shown["pending"]:
        rows.append(["", entry["name"], "", entry["status"], *([""] * (len(columns) - 4))])
    return columns, rows


@exp_app.command("sweep")
def sweep_command(
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="KEY=V1,V2,...: values to try (repeatable; all combined)."),
    ] = None,
    ranges: Annotated[
        list[str] | None,
        typer.Option("--range", help="KEY=LOW:HIGH[:log][:int] for --random / --optimize."),
    ] = None,
    choices: Annotated[
        list[str] | None,
        typer.Option("--choice", help="KEY=A,B,...: a list to pick from (--random/--optimize)."),
    ] = None,
    random_trials: Annotated[
        int | None, typer.Option("--random", help="N points drawn at random from the space.")
    ] = None,
    optimize: Annotated[
        str | None,
        typer.Option("--optimize", help="metrics.NAME: search with Optuna's TPE sampler."),
    ] = None,
    direction: Annotated[
        str, typer.Option("--direction", help="maximize or minimize the objective.")
    ] = "maximize",
    objective: Annotated[
        str | None,
        typer.Option("--objective", help="metrics.NAME to rank grid and random trials by."),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", help="At most N trials (the --optimize budget).")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Start no trial after this long (30m, 2h).")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set-param", "-S", help="[FILE:]KEY=VALUE fixed for every trial."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="The sweep's name.")] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", help="Worker processes running trials at once.")
    ] = 1,
    executor: ExecutorOpt = "local",
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Stages run at once in each trial.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of --random.")] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune",
            help="--optimize: stop trials whose logged intermediate values are clearly worse.",
        ),
    ] = True,
    prune_startup: Annotated[
        int, typer.Option("--prune-startup", help="Trials that finish before any is pruned.")
    ] = 5,
    queue_only: Annotated[
        bool, typer.Option("--queue", help="Only queue the trials ('mlcd exp start' runs them).")
    ] = False,
    register_best: Annotated[
        bool,
        typer.Option(
            "--register-best",
            help="Register the best trial's declared model and evaluate it against the champion.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a sweep: a grid, random points or an Optuna search, as child runs of one parent run.
    Exit 3 if every trial failed."""
    from mlcd.durations import parse_duration
    from mlcd.errors import StageFailed, UsageError
    from mlcd.experiments import sweep as sweeps
    from mlcd.experiments.queue import start_workers
    from mlcd.project import Project

    if random_trials is not None and optimize is not None:
        raise UsageError("choose one of --random N and --optimize METRIC")
    strategy = "optimize" if optimize else "random" if random_trials is not None else "grid"
    if strategy == "grid" and (ranges or choices):
        raise UsageError(
            "--range and --choice need --random N or --optimize METRIC",
            hint="a grid takes lists: --grid KEY=V1,V2",
        )
    if random_trials is not None and random_trials < 1:
        raise UsageError(f"--random must be at least 1 (got {random_trials})")
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1 (got {parallel})")
    timeout_s = parse_duration(timeout) if timeout else None
    dims = sweeps.parse_space(grid or (), ranges or (), choices or ())
    with Project.open() as project:
        services = _services(project)
        made = sweeps.create_sweep(
            project.root,
            services,
            strategy=strategy,
            dims=dims,
            fixed=settings or (),
            trials=random_trials if strategy == "random" else trials,
            objective=optimize or objective,
            direction=direction,
            name=name,
            seed=seed,
            jobs=jobs,
            executor=executor,
            timeout_s=timeout_s,
            prune=prune,
            prune_startup=prune_startup,
        )
        if queue_only:
            emit(
                made,
                as_json,
                lambda out: out.print(
                    f"queued sweep {made['name']}: {made['trials']} trial(s); "
                    "run them with: mlcd exp start -j N"
                ),
            )
            return
        if not as_json:
            typer.echo(
                f"sweep {made['name']} ({made['sweep_id'][:12]}): {made['trials']} trial(s), "
                f"{parallel} worker(s)",
                err=True,
            )
        start_workers(project.root, services, parallel, made["sweep_id"])
        shown = sweeps.finish_sweep(services, made["sweep_id"])
        if register_best:
            from mlcd.experiments.best import register_best as register

            shown["registered"] = register(project.root, project.config, services, shown)
    if as_json:
        emit(shown, True)
    else:
        columns, rows = _sweep_rows(shown)
        sweep = shown["sweep"]
        title = f"Sweep {sweep['name']} ({sweep['strategy']}, {sweep['status']})"
        emit(None, False, lambda out: out.print(table(title, columns, rows)))
        for item in shown.get("registered") or []:
            typer.echo(item["summary"])
    if shown["sweep"]["status"] == "failed":
        raise StageFailed(
            f"sweep {made['name']}: no trial finished",
            hint="read why with: mlcd exp queue logs " + f"{made['name']}-t0",
        )


def register(app: typer.Typer) -> None:
    """Attach ``exp`` to the root app."""
    app.add_typer(exp_app, name="exp")
