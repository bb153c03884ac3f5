"""Canary progression: a challenger becomes champion once its window passes healthy.

A retrain that promotes to ``challenger`` records ``canary.started``. The server sends a
share of traffic to the challenger and switches it off when it is clearly worse
(``serve.canary_disabled``). Here: once the window has passed, a challenger that was never
switched off is promoted to ``champion`` (through the champion's gates); one that was
switched off loses its alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlcd.errors import GateFailed, MlcdError
from mlcd.retrain.context import Context
from mlcd.store import events
from mlcd.store.sql import now as _now


@dataclass(frozen=True)
class CanaryDecision:
    """What happened to a model's canary on this pass."""

    model: str
    version: int | None
    action: str  # none | waiting | promoted | failed | refused
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "action": self.action,
            "reason": self.reason,
        }


def _record(ctx: Context, kind: str, model: str, **values: Any) -> None:
    ctx.store.transact(lambda conn: events.record(conn, kind, model=model, **values))


def advance_canary(ctx: Context, model: str, at: float | None = None) -> CanaryDecision:
    """Promote, fail or keep waiting on ``model``'s running canary."""
    from mlcd.evaluate.promotion import promote
    from mlcd.registry.versions import delete_alias, resolve

    at = _now() if at is None else at
    policy = ctx.policy(model)
    alias = "challenger"
    try:
        version = resolve(ctx.store, f"{model}@{alias}").version
    except MlcdError:
        return CanaryDecision(model, None, "none", "no challenger")
    with ctx.store.read() as conn:
        started = [
            e
            for e in events.query(conn, model=model, kind="canary.started")
            if e["version"] == version
        ]
        closed = [
            e
            for e in events.query(conn, model=model, kind="canary.*")
            if e["version"] == version
            and e["kind"] in ("canary.promoted", "canary.failed", "canary.refused")
        ]
    if not started or (closed and closed[0]["at"] >= started[0]["at"]):
        return CanaryDecision(model, version, "none", "no canary running for the challenger")
    begin = started[0]["at"]
    window = float((started[0]["details"] or {}).get("window_s", 0))
    with ctx.store.read() as conn:
        disabled = [
            e
            for e in events.query(conn, model=model, kind="serve.canary_disabled", since=begin)
            if e["version"] in (version, None)
        ]
    if disabled:
        reason = f"the server switched the canary off: {disabled[-1]['reason']}"
        delete_alias(ctx.store, model, alias, reason=reason)
        _record(ctx, "canary.failed", model, version=version, alias=alias, reason=reason)
        return CanaryDecision(model, version, "failed", reason)
    if at - begin < window:
        return CanaryDecision(
            model, version, "waiting", f"{window - (at - begin):.0f}s of the canary window left"
        )
    model_config = ctx.model(model)
    try:
        promote(
            ctx.store,
            ctx.objects,
            model,
            version,
            "champion",
            gates=ctx.config.gates.get("champion", []),
            data=str(ctx.root / model_config.eval_data) if model_config.eval_data else None,
            target=model_config.target,
            task=model_config.task,
            slices=model_config.slices or None,
            against="champion",
            reason=f"canary healthy for {policy.canary_window}",
            report_dir=ctx.root / ".mlcd" / "reports" / "canary" / f"{model}-v{version}",
        )
    except GateFailed as exc:
        _record(ctx, "canary.refused", model, version=version, alias="champion", reason=exc.message)
        return CanaryDecision(model, version, "refused", exc.message)
    delete_alias(ctx.store, model, alias, reason=f"v{version} became champion")
    _record(
        ctx,
        "canary.promoted",
        model,
        version=version,
        alias="champion",
        reason=f"healthy for {policy.canary_window}",
    )
    return CanaryDecision(
        model, version, "promoted", f"v{version} is champion after a healthy canary"
    )
