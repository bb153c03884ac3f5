"""Gates: the conditions from ``mlcd.yaml`` ``gates:`` a candidate must meet to take an alias.

Four forms (the grammar is shared with ``mlcd.config`` so typos fail at load time):

* absolute — ``roc_auc >= 0.85``; budgets are absolute gates on ``latency_p99_ms``,
  ``latency_p50_ms`` or ``size_mb``;
* relative — ``f1 >= champion.f1 - 0.005``;
* significance — ``roc_auc better than champion at 95%`` (one-sided paired bootstrap);
* per slice — ``no slice loses more than 0.02 accuracy``;
* no forgetting — ``no past window loses more than 0.02 accuracy``: the candidate is scored
  against the champion on the held-out data of every recorded past window (the eval data of
  earlier versions, see ``mlcd.logdata.windows``), and the worst loss must stay within;
* run metric — ``run.metrics.roc_auc.test >= 0.85``: a metric the candidate's run logged
  (the pipeline's own metrics file, ``mlcd.log_metric``), not one mlcd's evaluation computed.

With no champion (the first model of a name), relative, significance and slice gates pass
with a note saying so.

A gate on a measured latency has a third outcome besides pass and fail: *inconclusive*, when
the measurement's noise (the spread of its repetitions, see ``mlcd.evaluate.latency``) is
larger than the gate's margin to its threshold. mlcd then refuses to judge: the alias does
not move, but nothing is recorded as a failed gate either.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlcd.config import GATE_PATTERNS
from mlcd.errors import ConfigError
from mlcd.evaluate.metrics import ALL_METRICS, HIGHER_IS_BETTER

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_COMPILED = {kind: re.compile(pattern, re.IGNORECASE) for kind, pattern in GATE_PATTERNS.items()}


@dataclass(frozen=True)
class Gate:
    """One parsed gate expression."""

    expression: str
    kind: str  # absolute | relative | significance | slice | windows | run
    metric: str
    op: str = ">="
    value: float | None = None  # absolute threshold
    reference: str | None = None  # champion metric of a relative gate
    margin: float = 0.0  # relative offset (signed) or slice tolerance
    level: float | None = None  # significance level, 0-1

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "kind": self.kind,
            "metric": self.metric,
            "op": self.op,
            "value": self.value,
            "reference": self.reference,
            "margin": self.margin,
            "level": self.level,
        }


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate: observed value, what was required, and by how much."""

    gate: Gate
    passed: bool
    observed: float | None
    required: float | None
    #: How far from the threshold, positive when passing (in the metric's good direction).
    slack: float | None
    detail: str
    note: str | None = None
    #: The measurement was too noisy to judge (``passed`` is then False, but not a failure).
    inconclusive: bool = False

    @property
    def status(self) -> str:
        """``passed``, ``failed`` or ``inconclusive``."""
        if self.inconclusive:
            return "inconclusive"
        return "passed" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.gate.to_dict(),
            "passed": self.passed,
            "status": self.status,
            "observed": self.observed,
            "required": self.required,
            "slack": self.slack,
            "detail": self.detail,
            "note": self.note,
        }


@dataclass(frozen=True)
class GateVerdict:
    """All gates of an alias: passed only when every gate passed."""

    alias: str | None
    results: tuple[GateResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """True when every gate passed (vacuously true with no gates)."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        """The gates that failed (not those too noisy to judge)."""
        return [r for r in self.results if not r.passed and not r.inconclusive]

    @property
    def inconclusive(self) -> list[GateResult]:
        """The gates whose measurement was too noisy to judge."""
        return [r for r in self.results if r.inconclusive]

    @property
    def status(self) -> str:
        """``failed`` if any gate failed, else ``inconclusive`` if any could not be judged,
        else ``passed``."""
        if self.failures:
            return "failed"
        return "inconclusive" if self.inconclusive else "passed"

    def summary(self) -> str:
        """One line: ``3/4 gates passed; failed: f1 >= ... (short by 0.012)``."""
        total = len(self.results)
        ok = sum(1 for r in self.results if r.passed)
        line = f"{ok}/{total} gates passed"
        if self.failures:
            line += "; failed: " + "; ".join(
                f"{r.gate.expression} ({r.detail})" for r in self.failures
            )
        if self.inconclusive:
            line += "; inconclusive: " + "; ".join(
                f"{r.gate.expression} ({r.detail})" for r in self.inconclusive
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "passed": self.passed,
            "status": self.status,
            "results": [r.to_dict() for r in self.results],
        }


def _metric(name: str, expression: str, source: str) -> str:
    name = name.lower()
    if name not in ALL_METRICS:
        import difflib

        close = difflib.get_close_matches(name, ALL_METRICS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(ALL_METRICS)}"
        raise ConfigError(f"{source}: gate {expression!r}: unknown metric '{name}'", hint=hint)
    return name


def parse_gate(expression: str, source: str = "gates") -> Gate:
    """Parse one gate expression.

    Raises:
        ConfigError: not one of the four forms, or an unknown metric.
    """
    text = " ".join(expression.split())
    for kind in ("run", "significance", "slice", "windows", "relative", "absolute"):
        match = _COMPILED[kind].fullmatch(text)
        if match is None:
            continue
        groups = match.groupdict()
        if kind == "run":
            return Gate(text, kind, groups["metric"], groups["op"], value=float(groups["value"]))
        metric = _metric(groups["metric"], expression, source)
        if kind == "absolute":
            return Gate(text, kind, metric, groups["op"], value=float(groups["value"]))
        if kind == "relative":
            reference = _metric(groups["ref"], expression, source)
            margin = float(groups["margin"] or 0.0)
            return Gate(
                text,
                kind,
                metric,
                groups["op"],
                reference=reference,
                margin=-margin if groups.get("sign") == "-" else margin,
            )
        if kind == "significance":
            level = float(groups["level"]) / 100.0
            if not 0.5 <= level < 1.0:
                raise ConfigError(
                    f"{source}: gate {expression!r}: confidence must be between 50% and 100%"
                )
            return Gate(text, kind, metric, level=level)
        return Gate(text, kind, metric, margin=float(groups["margin"]))
    raise ConfigError(
        f"{source}: not a gate expression: {expression!r}",
        hint="write 'roc_auc >= 0.85', 'f1 >= champion.f1 - 0.005', 'roc_auc better than "
        "champion at 95%', 'no slice loses more than 0.02 accuracy' or "
        "'run.metrics.NAME >= 0.8' (docs/gates.md)",
    )


def parse_gates(expressions: Sequence[str], source: str = "gates") -> list[Gate]:
    """Parse a list of expressions (all errors are reported together).

    Raises:
        ConfigError: one or more expressions are invalid.
    """
    gates, problems = [], []
    for index, expression in enumerate(expressions):
        try:
            gates.append(parse_gate(expression, f"{source}[{index}]"))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return gates


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _compare(
    gate: Gate, observed: float | None, required: float, note: str | None = None
) -> GateResult:
    if observed is None or not math.isfinite(observed):
        return GateResult(
            gate,
            False,
            None,
            required,
            None,
            f"{gate.metric} is not available for this model",
            note,
        )
    passed = _OPS[gate.op](observed, required)
    upward = gate.op in (">=", ">")
    slack = observed - required if upward else required - observed
    word = "over" if passed else "short by"
    if not upward:
        word = "under" if passed else "over by"
    detail = f"{gate.metric} = {_fmt(observed)}, required {gate.op} {_fmt(required)} ({word} {_fmt(abs(slack))})"
    return GateResult(gate, passed, observed, required, slack, detail, note)


def check_gates(
    gates: Sequence[Gate],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    deltas: Mapping[str, Any] | None = None,
    slices: Mapping[str, tuple[Mapping[str, float], Mapping[str, float] | None]] | None = None,
    alias: str | None = None,
    run_metrics: Mapping[str, float] | None = None,
    windows: Mapping[str, tuple[Mapping[str, float], Mapping[str, float] | None]] | None = None,
    noise: Mapping[str, Mapping[str, float]] | None = None,
) -> GateVerdict:
    """Check gates against the candidate's (and champion's) metrics.

    Args:
        gates: parsed gates.
        candidate: the candidate's metrics (row metrics and budgets).
        champion: the champion's metrics, or None when there is no champion yet.
        deltas: ``{metric: Delta}`` from the paired bootstrap (for significance gates).
        slices: ``{slice: (candidate metrics, champion metrics or None)}``.
        alias: the alias the gates belong to (for the report).
        run_metrics: the latest metrics of the candidate's run (for ``run.metrics.X`` gates).
        windows: ``{past window: (candidate metrics, champion metrics)}`` (no-forgetting gates).
        noise: measured metrics' noise: ``{"absolute": {metric: spread of the candidate's
            repetitions}, "relative": {metric: spread of candidate - champion per
            repetition}}``; a gate on such a metric whose margin is below it is inconclusive.

    Raises:
        ConfigError: a run-metric gate names a metric the run does not have.
    """
    results = []
    for gate in gates:
        if gate.kind == "run":
            assert gate.value is not None
            results.append(_compare(gate, _run_metric(gate, run_metrics), gate.value))
        elif gate.kind == "absolute":
            assert gate.value is not None
            result = _compare(gate, candidate.get(gate.metric), gate.value)
            results.append(_judge_noise(result, (noise or {}).get("absolute", {})))
        elif champion is None:
            results.append(
                GateResult(
                    gate,
                    True,
                    candidate.get(gate.metric),
                    None,
                    None,
                    "no champion to compare with",
                    "first model of this name: passes",
                )
            )
        elif gate.kind == "relative":
            assert gate.reference is not None
            base = champion.get(gate.reference)
            if base is None or not math.isfinite(base):
                results.append(
                    GateResult(
                        gate,
                        False,
                        candidate.get(gate.metric),
                        None,
                        None,
                        f"the champion has no {gate.reference}",
                    )
                )
                continue
            result = _compare(gate, candidate.get(gate.metric), base + gate.margin)
            paired = (noise or {}).get("relative", {}) if gate.reference == gate.metric else {}
            results.append(_judge_noise(result, paired))
        elif gate.kind == "significance":
            results.append(_significance(gate, (deltas or {}).get(gate.metric)))
        elif gate.kind == "windows":
            results.append(_worst_loss(gate, windows or {}, "past window"))
        else:
            results.append(_worst_loss(gate, slices or {}, "slice"))
    return GateVerdict(alias, tuple(results))


def _judge_noise(result: GateResult, noise: Mapping[str, float]) -> GateResult:
    """The result, or an inconclusive one when the metric's noise exceeds the margin."""
    spread = noise.get(result.gate.metric)
    if spread is None or result.slack is None or not math.isfinite(spread):
        return result
    if spread <= abs(result.slack):
        return result
    detail = (
        f"inconclusive: {result.detail}, but the measurement's noise ({_fmt(spread)}, the "
        f"spread of its repetitions) exceeds that margin"
    )
    note = (
        "not judged: measure again on a quieter runner, or leave the budget more room; "
        "the alias does not move until it is judged"
    )
    return GateResult(
        result.gate,
        False,
        result.observed,
        result.required,
        result.slack,
        detail,
        note,
        inconclusive=True,
    )


def _run_metric(gate: Gate, run_metrics: Mapping[str, float] | None) -> float:
    if run_metrics is None:
        raise ConfigError(
            f"gate {gate.expression!r} reads the candidate's run, but the candidate was "
            "registered without a run",
            hint="register versions from 'mlcd run', mlcd.log_model in a run, or "
            "'mlcd models register ... --run RUN_ID'",
        )
    if gate.metric not in run_metrics:
        import difflib

        close = difflib.get_close_matches(gate.metric, list(run_metrics), n=1)
        known = ", ".join(sorted(run_metrics)) or "none"
        raise ConfigError(
            f"gate {gate.expression!r}: the candidate's run has no metric '{gate.metric}'",
            hint=(f"did you mean '{close[0]}'? " if close else "") + f"the run's metrics: {known}",
        )
    return float(run_metrics[gate.metric])


def _significance(gate: Gate, delta: Any) -> GateResult:
    assert gate.level is not None
    level = gate.level
    if delta is None:
        return GateResult(
            gate,
            False,
            None,
            None,
            None,
            f"no paired bootstrap of {gate.metric} (not available for both models)",
        )
    passed = bool(delta.better_at(level))
    detail = (
        f"{gate.metric} delta {delta.delta:+.4g} "
        f"({int(delta.confidence * 100)}% CI [{delta.low:+.4g}, {delta.high:+.4g}]); "
        f"candidate better in {delta.p_better:.1%} of resamples, needs {level:.0%}"
    )
    return GateResult(gate, passed, delta.delta, 0.0, delta.p_better - level, detail)


_EMPTY = {
    "slice": (
        "no slices declared",
        "declare slices under models.<name>.slices to make this gate bite",
    ),
    "past window": (
        "no past windows recorded",
        "every registered version's eval_data becomes a window; later candidates are checked on it",
    ),
}


def _worst_loss(
    gate: Gate,
    groups: Mapping[str, tuple[Mapping[str, float], Mapping[str, float] | None]],
    what: str,
) -> GateResult:
    """The largest loss against the champion over slices (or past windows) and its limit."""
    if not groups:
        detail, note = _EMPTY[what]
        return GateResult(gate, True, None, gate.margin, None, detail, note)
    higher = HIGHER_IS_BETTER.get(gate.metric, True)
    worst_name, worst_loss = None, -math.inf
    skipped = []
    for name, (cand, champ) in groups.items():
        a = cand.get(gate.metric)
        b = None if champ is None else champ.get(gate.metric)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            skipped.append(name)
            continue
        loss = (b - a) if higher else (a - b)
        if loss > worst_loss:
            worst_name, worst_loss = name, loss
    if worst_name is None:
        return GateResult(
            gate,
            True,
            None,
            gate.margin,
            None,
            f"{gate.metric} not available on any {what}",
            f"skipped: {', '.join(skipped)}",
        )
    passed = worst_loss <= gate.margin + 1e-12
    if worst_loss <= 0:
        detail = (
            f"no {what} loses {gate.metric}; the smallest gain is {_fmt(0.0 - worst_loss)} "
            f"on '{worst_name}'"
        )
    else:
        verb = "within" if passed else "over by"
        detail = (
            f"worst {what} '{worst_name}' loses {_fmt(worst_loss)} {gate.metric} "
            f"(limit {_fmt(gate.margin)}; {verb} {_fmt(abs(gate.margin - worst_loss))})"
        )
    skipped_note = f"skipped ({what}s without data): {', '.join(skipped)}" if skipped else None
    return GateResult(
        gate, passed, worst_loss, gate.margin, gate.margin - worst_loss, detail, skipped_note
    )
