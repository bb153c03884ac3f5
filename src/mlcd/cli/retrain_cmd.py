"""``mlcd retrain`` (a manual trigger) and ``mlcd watch`` (the policy daemon)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, err_console

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _context(project: Any) -> Any:
    from mlcd.retrain.context import Context

    return Context(project.root, project.config, project.store, project.objects)


def retrain_command(
    model: Annotated[str, typer.Argument(help="A model declared under models: in mlcd.yaml.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit trail).")],
    respect_budget: Annotated[
        bool, typer.Option("--respect-budget", help="Apply the policy's cooldown and daily budget.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retrain now, through the same path as the policies: pipeline, gates, promotion.

    Exit 1 when the gates refuse the new version, 3 when the pipeline fails.
    """
    from mlcd.errors import GateFailed, RetrainError
    from mlcd.project import Project
    from mlcd.retrain.flow import retrain

    if not reason.strip():
        from mlcd.errors import UsageError

        raise UsageError("--reason must say why", hint='e.g. --reason "fresh labels from March"')
    with Project.open() as project:

        def say(line: str) -> None:  # stderr either way: --json only shapes stdout
            err_console().print(line, markup=False)

        outcome = retrain(
            _context(project),
            model,
            trigger="manual",
            reason=reason,
            respect_budget=respect_budget,
            say=say,
        )
    emit(outcome.to_dict(), as_json, lambda out: out.print(f"{outcome.status}: {outcome.reason}"))
    if outcome.status == "refused":
        raise GateFailed(
            f"the gates refused v{outcome.version}: {outcome.reason}",
            hint=f"reports in {outcome.report_dir}",
        )
    if outcome.status == "failed":
        raise RetrainError(f"retrain failed: {outcome.reason}")


def watch_command(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between passes.")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate the retrain policies on an interval; retrain, gate, promote, advance canaries.

    Stops cleanly on SIGTERM or Ctrl-C (after the step in progress).
    """
    import json
    import signal
    import sys
    import threading

    from mlcd.project import Project
    from mlcd.retrain.watch import watch

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        err_console().print(
            f"watch: signal {signum}, stopping after the current step", markup=False
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_pass(report: Any) -> None:
        if as_json:
            sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
            sys.stdout.flush()
            return
        for model, results in report.triggers.items():
            fired = [r for r in results if r["fired"]]
            line = (
                "; ".join(f"{r['trigger']}: {r['reason']}" for r in (fired or results))
                or "no triggers"
            )
            err_console().print(f"{model}: {'FIRED ' if fired else ''}{line}", markup=False)
        for outcome in report.retrains:
            err_console().print(
                f"{outcome['model']}: retrain {outcome['status']}: {outcome['reason']}",
                markup=False,
            )
        for canary in report.canaries:
            if canary["action"] not in ("none",):
                err_console().print(
                    f"{canary['model']}: canary {canary['action']}: {canary['reason']}",
                    markup=False,
                )
        for error in report.errors:
            err_console().print(f"error: {error}", markup=False)

    with Project.open() as project:

        def say(line: str) -> None:  # stderr either way: --json only shapes stdout
            err_console().print(line, markup=False)

        watch(
            _context(project), interval_s=interval, once=once, stop=stop, on_pass=on_pass, say=say
        )


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_command)
    app.command("watch")(watch_command)
