"""``mlcd watch``: evaluate every policy on an interval; retrain and advance canaries.

The loop survives a failing retrain (recorded, then the next pass goes on), stops cleanly
on SIGTERM/SIGINT between steps, and resumes after a restart without duplicating work:
schedule ticks and data digests live in the store, a retrain that died is detected by its
marker, and the run cache restores whatever it had finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlcd.errors import MlcdError, RetrainError
from mlcd.retrain.canary import advance_canary
from mlcd.retrain.context import Context
from mlcd.retrain.flow import RetrainOutcome, retrain
from mlcd.retrain.triggers import (
    TriggerResult,
    evaluate_triggers,
    remember_data,
    remember_labels,
    remember_tick,
)
from mlcd.store import events, state
from mlcd.store.sql import now as _now

log = logging.getLogger("mlcd.watch")


@dataclass
class PassReport:
    """What one pass over the policies decided."""

    at: float
    triggers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    canaries: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _record_check(ctx: Context, model: str, result: TriggerResult) -> None:
    """Record a trigger's verdict as an event: always when it fires, otherwise only when its
    reason changed since last time (so an idle daemon does not flood the audit trail)."""
    key = f"retrain:{model}:last:{result.trigger}"
    with ctx.store.read() as conn:
        last = state.get(conn, key)
    summary = {"fired": result.fired, "reason": result.reason}
    if result.fired or last != summary:

        def work(conn: Any) -> None:
            events.record(
                conn,
                "trigger.fired" if result.fired else "trigger.checked",
                model=model,
                reason=f"{result.trigger}: {result.reason}",
                details=result.to_dict(),
            )
            state.put(conn, key, summary)

        ctx.store.transact(work)


def run_pass(
    ctx: Context,
    models: list[str] | None = None,
    at: float | None = None,
    say: Callable[[str], None] | None = None,
) -> PassReport:
    """One pass: canaries first, then triggers and at most one retrain per model (none while
    the model's canary is still in its window)."""
    at = _now() if at is None else at
    report = PassReport(at=at)
    names = models or sorted(ctx.config.retrain)
    for model in names:
        try:
            canary = advance_canary(ctx, model, at)
            report.canaries.append(canary.to_dict())
            if canary.action == "waiting":
                # A retrain already answered the signals the old champion still shows (its
                # traffic keeps drifting); retraining again would restart the canary's window.
                continue
            results = evaluate_triggers(ctx, model, at)
            report.triggers[model] = [r.to_dict() for r in results]
            for result in results:
                _record_check(ctx, model, result)
            fired = [r for r in results if r.fired]
            if not fired:
                continue
            first = fired[0]
            outcome: RetrainOutcome = retrain(
                ctx,
                model,
                trigger=first.trigger,
                reason="; ".join(f"{r.trigger}: {r.reason}" for r in fired),
                details={"triggers": [r.to_dict() for r in fired]},
                say=say,
            )
            report.retrains.append(outcome.to_dict())
            if outcome.status != "skipped":  # the trigger was acted on: do not fire on it again
                for result in fired:
                    if result.trigger == "new_data":
                        remember_data(ctx, model, result)
                    elif result.trigger == "schedule":
                        remember_tick(ctx, model, result)
                    elif result.trigger == "labels":
                        remember_labels(ctx, model, result)
        except RetrainError as exc:  # another process is retraining this model: not ours
            report.errors.append(f"{model}: {exc.message}")
        except MlcdError as exc:
            report.errors.append(f"{model}: {exc.message}")
            log.error("watch: %s: %s", model, exc.message)
    return report


def watch(
    ctx: Context,
    interval_s: float = 60.0,
    once: bool = False,
    stop: threading.Event | None = None,
    on_pass: Callable[[PassReport], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> int:
    """Run passes until ``stop`` is set (or once). Returns the number of passes made."""
    stop = stop or threading.Event()
    ctx.store.transact(
        lambda conn: events.record(
            conn, "watch.started", details={"interval_s": interval_s, "once": once}
        )
    )
    passes = 0
    try:
        while not stop.is_set():
            report = run_pass(ctx, say=say)
            passes += 1
            if on_pass:
                on_pass(report)
            if once:
                break
            stop.wait(interval_s)
    finally:
        ctx.store.transact(
            lambda conn: events.record(conn, "watch.stopped", details={"passes": passes})
        )
    return passes
