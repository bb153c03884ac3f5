"""Runner: ``run_pipeline`` brings a pipeline up to date, running only what changed.

It first checks every selected stage against ``mlcd.lock`` through the stat cache alone. If
nothing is stale it returns there: no metadata store, no run recorded, a few milliseconds.
Otherwise it opens the stores and hands over to ``execution.Execution``.
"""

from __future__ import annotations

from collections.abc import Callable

from mlcd.pipeline.inputs import has_inputs, refresh_inputs
from mlcd.pipeline.plan import (
    FAILED,
    Reporter,
    RunOptions,
    RunResult,
    Services,
    StageResult,
    check_pipeline,
    forced_stages,
    plan_stages,
)
from mlcd.pipeline.snapshot import Snapshot
from mlcd.pipeline.statcache import StatCache
from mlcd.pipeline.status import Digests, StageState, inspect_stage, pipeline_status

__all__ = [
    "FAILED",
    "Reporter",
    "RunOptions",
    "RunResult",
    "Services",
    "StageResult",
    "check_pipeline",
    "forced_stages",
    "plan_stages",
    "run_pipeline",
]


def _dry_run(
    snapshot: Snapshot, states: list[StageState], services: Services, forced: frozenset[str]
) -> RunResult:
    from mlcd.pipeline.outputs import restorable
    from mlcd.store import cache

    results = []
    for state in states:
        force = state.name in forced
        if state.stale or force:
            spec = snapshot.stages[state.name]
            reason = "; ".join(r.message for r in state.reasons) or "forced (--force)"
            outcome = "run"
            if not force and not spec.always_run:
                with services.store.read() as conn:
                    entry = cache.get_entry(conn, state.fingerprint)
                if entry and restorable(services.objects, entry["outputs"]):
                    outcome = "restore"
            reasons = tuple(r.to_dict() for r in state.reasons)
            results.append(
                StageResult(state.name, outcome, reason, 0.0, state.fingerprint, reasons)
            )
        elif state.upstream:
            reason = (
                f"upstream {', '.join(state.upstream)} stale: runs only if their outputs change"
            )
            results.append(StageResult(state.name, "maybe", reason, fingerprint=state.fingerprint))
        else:
            results.append(
                StageResult(state.name, "skipped", "up to date", fingerprint=state.fingerprint)
            )
    return RunResult(None, results, dry_run=True)


def run_pipeline(
    snapshot: Snapshot,
    open_services: Callable[[], Services],
    options: RunOptions | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Bring the selected stages (all by default) up to date.

    Args:
        snapshot: the pipeline as declared (see ``load_snapshot``).
        open_services: called once, only if something must run, restore or be looked up.
        options: targets, ``force`` (the targets, or all), ``force_upstream``, ``single``
            (targets without their upstream), ``jobs``, ``dry_run``, executor name.
        reporter: receives progress events.

    Returns:
        The run (``run_id`` is None when everything was already up to date) and per-stage
        outcomes. A failed stage does not raise: check ``result.ok``.

    Raises:
        ConfigError: the graph is invalid (cycle, overlapping outs, missing dep) or a
            declared param does not exist; nothing ran.
        UsageError: a target is not a stage; nothing ran.
        PipelineError: ``mlcd.lock`` is unreadable.
        KeyboardInterrupt: interrupted; running commands were stopped, the run marked killed.
    """
    options = options or RunOptions()
    check_pipeline(snapshot)
    plan = plan_stages(snapshot, options)
    forced = forced_stages(snapshot, options)
    services: Services | None = None
    if has_inputs(snapshot, plan):
        # from_log datasets and warm_start pointers are written first: they are deps.
        services = open_services()
        refresh_inputs(snapshot, services.store, services.objects, plan)
    with StatCache(snapshot.state_dir / "statcache.db") as statcache:
        if options.single:  # no upstream stage runs: each stage is judged on its files alone
            digests = Digests(snapshot.root, statcache)
            states = [inspect_stage(snapshot, snapshot.stages[n], digests) for n in plan]
        else:
            states = pipeline_status(snapshot, statcache, options.targets)
    if not forced and not any(s.stale for s in states):
        skipped = [
            StageResult(s.name, "skipped", "up to date", fingerprint=s.fingerprint) for s in states
        ]
        return RunResult(None, skipped, dry_run=options.dry_run)
    services = services or open_services()
    if options.dry_run:
        return _dry_run(snapshot, states, services, forced)
    from mlcd.pipeline.execution import Execution

    return Execution(snapshot, services, options, reporter or Reporter()).execute()
