"""One retrain: pipeline -> new version -> gates against the champion -> promotion.

The same path serves the watch daemon and ``mlcd retrain``. Every decision is an audit event
linked to the run and versions it touched. A retrain that dies half-way leaves a marker in
the ``state`` table; the next retrain of the model records the interruption and starts over,
and the run cache restores every stage that had already finished, so no work is repeated.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.errors import GateFailed, MlcdError, RetrainError
from mlcd.retrain.context import Context
from mlcd.retrain.guard import STARTED, check_budget, retrain_lock
from mlcd.retrain.timing import parse_duration
from mlcd.store import events, state
from mlcd.store.sql import now

log = logging.getLogger("mlcd.retrain")
Say = Callable[[str], None]


@dataclass
class RetrainOutcome:
    """How a retrain ended."""

    model: str
    trigger: str
    status: str  # promoted | canary | refused | unchanged | failed | skipped
    reason: str
    retrain_id: str | None = None
    run_id: str | None = None
    version: int | None = None
    alias: str | None = None
    report_dir: str | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _record(ctx: Context, kind: str, model: str, **values: Any) -> None:
    ctx.store.transact(lambda conn: events.record(conn, kind, model=model, **values))


def _inflight_key(model: str) -> str:
    return f"retrain:{model}:inflight"


def _run_pipeline(ctx: Context, stages: tuple[str, ...], force: bool, say: Say) -> Any:
    from mlcd.pipeline.runner import RunOptions, Services, run_pipeline
    from mlcd.pipeline.snapshot import load_snapshot

    snapshot = load_snapshot(ctx.root)
    result = run_pipeline(
        snapshot,
        lambda: Services(ctx.store, ctx.objects),
        RunOptions(targets=stages, force=force),
    )
    for stage in result.stages:
        say(f"  stage {stage.stage}: {stage.outcome}")
    return result


def retrain(
    ctx: Context,
    model: str,
    *,
    trigger: str,
    reason: str,
    details: dict[str, Any] | None = None,
    respect_budget: bool = True,
    report_dir: str | os.PathLike[str] | None = None,
    say: Say | None = None,
) -> RetrainOutcome:
    """Retrain ``model`` and promote the result through its gates, per its policy.

    Args:
        ctx: the project's parts.
        model: a model declared under ``models:``.
        trigger: what asked for it (``drift``, ``decay``, ``new_data``, ``schedule``, ``manual``).
        reason: why, in words (recorded).
        details: the trigger's figures (recorded).
        respect_budget: apply the policy's cooldown and daily budget (manual retrains may not).
        report_dir: where gate reports go (default ``.mlcd/reports/retrain/<id>``).
        say: progress lines.

    Returns:
        The outcome; a failed gate is an outcome (``refused``), not an exception.

    Raises:
        RetrainError: another retrain of ``model`` is running.
        ConfigError: the model is not declared.
    """
    say = say or (lambda line: log.info("%s", line))
    policy = ctx.policy(model)
    model_config = ctx.model(model)
    if respect_budget:
        budget = check_budget(ctx.store, model, parse_duration(policy.cooldown), policy.max_per_day)
        if not budget.allowed:
            _record(
                ctx, "retrain.skipped", model, reason=budget.reason, details={"trigger": trigger}
            )
            return RetrainOutcome(model, trigger, "skipped", budget.reason)
    retrain_id = uuid.uuid4().hex[:12]
    folder = (
        Path(report_dir) if report_dir else ctx.root / ".mlcd" / "reports" / "retrain" / retrain_id
    )
    with retrain_lock(ctx.store, model, _owner()):
        with ctx.store.read() as conn:
            interrupted = state.get(conn, _inflight_key(model))
        if interrupted:
            _record(
                ctx,
                "retrain.interrupted",
                model,
                reason=f"retrain {interrupted.get('id')} did not finish (process ended at step "
                f"'{interrupted.get('step')}'); starting over, the run cache keeps finished stages",
                details=interrupted,
            )
        marker = {"id": retrain_id, "trigger": trigger, "started_at": now(), "step": "pipeline"}
        ctx.store.transact(lambda conn: state.put(conn, _inflight_key(model), marker))
        _record(
            ctx,
            STARTED,
            model,
            reason=reason,
            details={"id": retrain_id, "trigger": trigger, **(details or {})},
        )
        say(f"retrain {retrain_id} of {model}: {reason}")
        try:
            outcome = _retrain_steps(
                ctx, model, policy, model_config, retrain_id, trigger, folder, marker, say
            )
        except MlcdError as exc:
            outcome = RetrainOutcome(model, trigger, "failed", exc.message, retrain_id)
            _record(ctx, "retrain.failed", model, reason=exc.message, details={"id": retrain_id})
        finally:
            ctx.store.transact(lambda conn: state.put(conn, _inflight_key(model), None))
    _record(
        ctx,
        "retrain.finished",
        model,
        version=outcome.version,
        alias=outcome.alias,
        run_id=outcome.run_id,
        reason=f"{outcome.status}: {outcome.reason}",
        details={"id": retrain_id, "status": outcome.status},
    )
    return outcome


def _retrain_steps(
    ctx: Context,
    model: str,
    policy: Any,
    model_config: Any,
    retrain_id: str,
    trigger: str,
    folder: Path,
    marker: dict[str, Any],
    say: Say,
) -> RetrainOutcome:
    from mlcd.evaluate.promotion import promote
    from mlcd.registration import register_declared_models
    from mlcd.registry.versions import resolve

    def step(name: str) -> None:
        marker["step"] = name
        ctx.store.transact(lambda conn: state.put(conn, _inflight_key(model), dict(marker)))

    if policy.refresh_stage:
        say(f"refreshing data: stage {policy.refresh_stage}")
        refreshed = _run_pipeline(ctx, (policy.refresh_stage,), True, say)
        if not refreshed.ok:
            raise RetrainError(
                f"refresh stage '{policy.refresh_stage}' failed",
                hint="see its log with 'mlcd runs show'",
            )
    say("running the pipeline")
    result = _run_pipeline(ctx, tuple(policy.stages), False, say)
    if not result.ok:
        failed = [s for s in result.stages if s.outcome == "failed"] or result.failed
        tail = (failed[0].log_tail or failed[0].error or "").strip().splitlines()[-5:]
        raise RetrainError(
            f"pipeline failed at stage '{failed[0].stage}'"
            + (":\n    " + "\n    ".join(tail) if tail else ""),
            hint=f"full log: {failed[0].log_path or 'mlcd runs show'}",
        )
    step("register")
    registered = register_declared_models(
        ctx.root, ctx.config, ctx.store, ctx.objects, result.run_id, [model], say
    )
    version = registered[0].version
    if version is None:
        raise RetrainError(
            f"the pipeline left no model package at {model_config.path}: {registered[0].note}"
        )
    try:
        champion = resolve(ctx.store, f"{model}@champion").version
    except MlcdError:
        champion = None
    if champion == version:
        return RetrainOutcome(
            model,
            trigger,
            "unchanged",
            f"the pipeline produced the champion again (v{version})",
            retrain_id,
            result.run_id,
            version,
        )
    step("gates")
    alias = policy.promote_to
    gates = ctx.config.gates.get(alias) or ctx.config.gates.get("champion", [])
    say(f"gating v{version} against the champion for '{alias}' ({len(gates)} gate(s))")
    try:
        promotion = promote(
            ctx.store,
            ctx.objects,
            model,
            version,
            alias,
            gates=gates,
            data=str(ctx.root / model_config.eval_data) if model_config.eval_data else None,
            target=model_config.target,
            task=model_config.task,
            slices=model_config.slices or None,
            against="champion",
            reason=f"retrain {retrain_id} ({trigger})",
            report_dir=folder,
        )
    except GateFailed as exc:
        _record(
            ctx,
            "retrain.refused",
            model,
            version=version,
            run_id=result.run_id,
            reason=exc.message,
            details={"id": retrain_id, "alias": alias},
        )
        return RetrainOutcome(
            model,
            trigger,
            "refused",
            exc.message,
            retrain_id,
            result.run_id,
            version,
            report_dir=str(folder),
        )
    gates_out = (
        [g.to_dict() for g in promotion.evaluation.verdict.results] if promotion.evaluation else []
    )
    if alias == "champion":
        return RetrainOutcome(
            model,
            trigger,
            "promoted",
            f"v{version} is champion",
            retrain_id,
            result.run_id,
            version,
            alias,
            str(folder),
            gates_out,
        )
    _record(
        ctx,
        "canary.started",
        model,
        version=version,
        alias=alias,
        run_id=result.run_id,
        reason=f"canary for {policy.canary_window}",
        details={
            "id": retrain_id,
            "window_s": parse_duration(policy.canary_window),
            "percent": policy.canary_percent,
        },
    )
    return RetrainOutcome(
        model,
        trigger,
        "canary",
        f"v{version} is {alias}; champion after {policy.canary_window}",
        retrain_id,
        result.run_id,
        version,
        alias,
        str(folder),
        gates_out,
    )
