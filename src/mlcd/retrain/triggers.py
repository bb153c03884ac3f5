"""Retraining triggers: drift, performance decay, new data, schedule, new labels.

Each check returns a ``TriggerResult`` saying whether it fired and why, with the figures it
looked at. Checks that compare against what was seen before (new data, schedule) keep their
memory in the store's ``state`` table; the first look only records, it never fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlcd.config import Policy
from mlcd.errors import MlcdError
from mlcd.retrain.context import Context
from mlcd.retrain.timing import check_schedule
from mlcd.store import state
from mlcd.store.sql import now as _now


@dataclass(frozen=True)
class TriggerResult:
    """One trigger's verdict."""

    trigger: str
    fired: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "fired": self.fired,
            "reason": self.reason,
            "details": self.details,
        }


def _monitor(ctx: Context, model: str, at: float) -> Any:
    from mlcd.monitor.run import run_monitor

    return run_monitor(
        config=ctx.config,
        root=ctx.root,
        target=f"{model}@champion",
        store=ctx.store,
        objects=ctx.objects,
        since=ctx.config.monitor.window,
        now=at,
    )


def check_drift(
    ctx: Context, model: str, policy: Policy, at: float, report: Any = None
) -> TriggerResult:
    """Fires when the drifted share of features (or any named feature) crosses the policy's line."""
    rule = policy.triggers.drift
    assert rule is not None
    report = report if report is not None else _monitor(ctx, model, at)
    drift = report.drift
    drifted = [f.name for f in drift.drifted]
    details = {
        "share": drift.share,
        "drifted": drifted,
        "tested": len(drift.tested),
        "rows": report.summary.to_dict().get("rows"),
        "version": report.subject.version,
    }
    if not drift.tested:
        return TriggerResult(
            "drift", False, "no features could be tested (empty or too small window)", details
        )
    rows = report.summary.accepted
    if rows < rule.min_rows:
        return TriggerResult(
            "drift",
            False,
            f"{rows} rows in the window, fewer than min_rows = {rule.min_rows}",
            details,
        )
    named = [name for name in rule.features if name in drifted]
    if named:
        return TriggerResult(
            "drift", True, f"named feature(s) drifted: {', '.join(named)}", details
        )
    threshold = rule.share if rule.share is not None else ctx.config.monitor.drift.share_threshold
    if drift.share >= threshold and drifted:
        return TriggerResult(
            "drift",
            True,
            f"{drift.share:.0%} of features drifted (>= {threshold:.0%}): {', '.join(drifted)}",
            details,
        )
    return TriggerResult(
        "drift", False, f"{drift.share:.0%} of features drifted (< {threshold:.0%})", details
    )


def check_decay(
    ctx: Context, model: str, policy: Policy, at: float, report: Any = None
) -> TriggerResult:
    """Fires when a live metric over labelled predictions falls below the policy's floor."""
    rule = policy.triggers.decay
    assert rule is not None
    report = report if report is not None else _monitor(ctx, model, at)
    performance = report.performance
    if performance is None:
        return TriggerResult("decay", False, "no labelled predictions yet")
    labels = performance.labels
    value = performance.overall.get(rule.metric)
    details = {"metric": rule.metric, "value": value, "labels": labels, "below": rule.below}
    if labels < rule.min_labels:
        return TriggerResult(
            "decay", False, f"{labels} labels, fewer than {rule.min_labels} needed", details
        )
    if value is None:
        return TriggerResult(
            "decay", False, f"metric '{rule.metric}' is not computed for this model", details
        )
    if float(value) < rule.below:
        return TriggerResult(
            "decay", True, f"{rule.metric} = {float(value):.4g} < {rule.below}", details
        )
    return TriggerResult(
        "decay", False, f"{rule.metric} = {float(value):.4g} >= {rule.below}", details
    )


def _path_digests(ctx: Context, paths: list[str]) -> dict[str, str | None]:
    from mlcd.pipeline.statcache import StatCache

    with StatCache(ctx.root / ".mlcd" / "statcache.db") as cache:
        digests = {path: cache.path_digest(ctx.root / path) for path in paths}
        cache.flush()
    return digests


def check_new_data(ctx: Context, model: str, policy: Policy, commit: bool = True) -> TriggerResult:
    """Fires when a tracked data path's digest differs from the one seen last time."""
    paths = policy.triggers.new_data
    key = f"retrain:{model}:data"
    current = _path_digests(ctx, paths)
    with ctx.store.read() as conn:
        seen = state.get(conn, key)
    if seen is None:
        if commit:
            ctx.store.transact(lambda conn: state.put(conn, key, current))
        return TriggerResult(
            "new_data", False, "first look: digests recorded", {"digests": current}
        )
    changed = sorted(p for p in paths if current.get(p) != seen.get(p))
    details = {"changed": changed, "digests": current}
    if changed:
        return TriggerResult("new_data", True, f"new data in {', '.join(changed)}", details)
    return TriggerResult("new_data", False, "tracked data unchanged", details)


def remember_data(ctx: Context, model: str, result: TriggerResult) -> None:
    """Record the digests a new-data trigger fired on, once its retrain has run."""
    digests = result.details.get("digests")
    if digests is not None:
        ctx.store.transact(lambda conn: state.put(conn, f"retrain:{model}:data", digests))


def check_scheduled(
    ctx: Context, model: str, policy: Policy, at: float, commit: bool = True
) -> TriggerResult:
    """Fires once per elapsed cron tick; ticks missed while nobody watched coalesce into one."""
    expression = policy.triggers.schedule
    assert expression is not None
    key = f"retrain:{model}:tick"
    with ctx.store.read() as conn:
        last = state.get(conn, key)
    check = check_schedule(expression, last, at)
    if commit and check.tick is not None and check.tick != last and (not check.due or last is None):
        ctx.store.transact(lambda conn: state.put(conn, key, check.tick))
    details = check.to_dict()
    if last is None:
        return TriggerResult("schedule", False, "first look: schedule recorded", details)
    if check.due:
        extra = (
            f" ({check.missed} earlier tick(s) missed while nobody watched)" if check.missed else ""
        )
        return TriggerResult("schedule", True, f"'{expression}' is due{extra}", details)
    return TriggerResult("schedule", False, f"'{expression}' not due", details)


def remember_tick(ctx: Context, model: str, result: TriggerResult) -> None:
    """Record the schedule tick a retrain handled."""
    tick = result.details.get("tick")
    if tick is not None:
        ctx.store.transact(lambda conn: state.put(conn, f"retrain:{model}:tick", tick))


def check_labels(ctx: Context, model: str, policy: Policy, commit: bool = True) -> TriggerResult:
    """Fires when ``count`` labels arrived since the last retrain this trigger started (the
    loop closed on labels: production feedback becomes training data, see ``data from-log``)."""
    from mlcd.store.predictions import count_feedback

    rule = policy.triggers.labels
    assert rule is not None
    key = f"retrain:{model}:labels"
    with ctx.store.read() as conn:
        total = count_feedback(conn, model)
        seen = state.get(conn, key)
    details = {"labels": total, "count": rule.count}
    if seen is None:
        if commit:
            ctx.store.transact(lambda conn: state.put(conn, key, total))
        return TriggerResult("labels", False, f"first look: {total} label(s) recorded", details)
    new = total - int(seen)
    details["new"] = new
    if new >= rule.count:
        return TriggerResult("labels", True, f"{new} new label(s) >= {rule.count}", details)
    return TriggerResult("labels", False, f"{new} new label(s), {rule.count} needed", details)


def remember_labels(ctx: Context, model: str, result: TriggerResult) -> None:
    """Record the label count a labels trigger fired on, once its retrain has run."""
    total = result.details.get("labels")
    if total is not None:
        ctx.store.transact(lambda conn: state.put(conn, f"retrain:{model}:labels", total))


def evaluate_triggers(ctx: Context, model: str, at: float | None = None) -> list[TriggerResult]:
    """Every trigger of ``model``'s policy, checked now. A trigger whose check fails (say, no
    reference data yet) does not fire; its error is the reason."""
    at = _now() if at is None else at
    policy = ctx.policy(model)
    triggers = policy.triggers
    results: list[TriggerResult] = []
    report = None
    if triggers.drift is not None or triggers.decay is not None:
        try:
            report = _monitor(ctx, model, at)
        except MlcdError as exc:
            for name, rule in (("drift", triggers.drift), ("decay", triggers.decay)):
                if rule is not None:
                    results.append(TriggerResult(name, False, f"monitoring failed: {exc.message}"))
    if report is not None and triggers.drift is not None:
        results.append(check_drift(ctx, model, policy, at, report))
    if report is not None and triggers.decay is not None:
        results.append(check_decay(ctx, model, policy, at, report))
    if triggers.new_data:
        results.append(check_new_data(ctx, model, policy))
    if triggers.schedule:
        results.append(check_scheduled(ctx, model, policy, at))
    if triggers.labels is not None:
        results.append(check_labels(ctx, model, policy))
    return results
