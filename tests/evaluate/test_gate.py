"""Gate expressions: parsing, config-time checks, and verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from mlcd.config import parse_config
from mlcd.errors import ConfigError
from mlcd.evaluate.bootstrap import Delta
from mlcd.evaluate.gate import check_gates, parse_gate, parse_gates


def test_the_four_forms_parse() -> None:
    absolute = parse_gate("roc_auc >= 0.85")
    relative = parse_gate("f1 >= champion.f1 - 0.005")
    significance = parse_gate("roc_auc   better than champion at 95%")
    per_slice = parse_gate("no slice loses more than 0.02 accuracy")
    budget = parse_gate("latency_p99_ms <= 5")

    assert (absolute.kind, absolute.metric, absolute.op, absolute.value) == (
        "absolute",
        "roc_auc",
        ">=",
        0.85,
    )
    assert (relative.kind, relative.reference, relative.margin) == ("relative", "f1", -0.005)
    assert (significance.kind, significance.level) == ("significance", 0.95)
    assert (per_slice.kind, per_slice.metric, per_slice.margin) == ("slice", "accuracy", 0.02)
    assert (budget.kind, budget.metric, budget.op, budget.value) == (
        "absolute",
        "latency_p99_ms",
        "<=",
        5,
    )
    assert parse_gate("rmse <= champion.rmse + 1.5").margin == 1.5


def test_unknown_metric_and_bad_syntax_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'roc_acu'") as info:
        parse_gate("roc_acu >= 0.8")
    assert "did you mean 'roc_auc'" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="confidence must be between"):
        parse_gate("f1 better than champion at 30%")
    with pytest.raises(ConfigError) as many:
        parse_gates(["f1 >= 0.5", "f1 is good", "auc >= 0.7"], "gates.champion")
    assert "gates.champion[1]: not a gate expression" in many.value.message
    assert "gates.champion[2]" in many.value.message


def test_mlcd_yaml_with_a_bad_gate_fails_at_load_with_its_line() -> None:
    text = "gates:\n  champion:\n    - roc_auc >= 0.85\n    - roc_auc is great\n"

    with pytest.raises(ConfigError, match=r"mlcd\.yaml:4: gates\.champion\[1\]: .*not a gate"):
        parse_config(text)


def test_absolute_and_budget_gates_report_by_how_much() -> None:
    gates = parse_gates(["roc_auc >= 0.85", "latency_p99_ms <= 5", "size_mb <= 50"])

    verdict = check_gates(gates, {"roc_auc": 0.8, "latency_p99_ms": 3.0, "size_mb": 60.0}, None)

    assert not verdict.passed
    failed = {r.gate.metric: r for r in verdict.failures}
    assert set(failed) == {"roc_auc", "size_mb"}
    assert failed["roc_auc"].slack == pytest.approx(-0.05)
    assert "short by 0.05" in failed["roc_auc"].detail
    assert "over by 10" in failed["size_mb"].detail
    assert "2 failed" not in verdict.summary() and verdict.summary().startswith("1/3 gates passed")


def test_missing_metric_fails_the_gate_with_a_reason() -> None:
    verdict = check_gates(parse_gates(["log_loss <= 0.5"]), {"accuracy": 0.9}, None)

    assert not verdict.passed
    assert "not available" in verdict.results[0].detail


def test_relative_gates_pass_with_a_note_when_there_is_no_champion() -> None:
    gates = parse_gates(
        [
            "f1 >= champion.f1 - 0.005",
            "f1 better than champion at 95%",
            "no slice loses more than 0.02 accuracy",
        ]
    )

    verdict = check_gates(gates, {"f1": 0.5}, None)

    assert verdict.passed
    assert all("first model" in (r.note or "") for r in verdict.results)


def test_relative_gate_against_the_champion() -> None:
    gates = parse_gates(["f1 >= champion.f1 - 0.005", "rmse <= champion.rmse"])

    ok = check_gates(gates[:1], {"f1": 0.796}, {"f1": 0.80})
    bad = check_gates(gates[:1], {"f1": 0.79}, {"f1": 0.80})

    assert ok.passed
    assert not bad.passed
    assert bad.results[0].required == pytest.approx(0.795)
    assert "short by 0.005" in bad.results[0].detail


def test_significance_gate_uses_the_bootstrap_distribution() -> None:
    gate = parse_gates(["roc_auc better than champion at 95%"])
    sure = Delta("roc_auc", 0.9, 0.8, 0.1, 0.05, 0.15, 0.95, 1.0, np.full(100, 0.1))
    unsure = Delta(
        "roc_auc", 0.81, 0.8, 0.01, -0.02, 0.04, 0.95, 0.7, np.linspace(-0.03, 0.05, 100)
    )

    assert check_gates(gate, {"roc_auc": 0.9}, {"roc_auc": 0.8}, {"roc_auc": sure}).passed
    verdict = check_gates(gate, {"roc_auc": 0.81}, {"roc_auc": 0.8}, {"roc_auc": unsure})
    assert not verdict.passed
    assert "needs 95%" in verdict.results[0].detail


def test_slice_gate_names_the_worst_slice() -> None:
    gate = parse_gates(["no slice loses more than 0.02 accuracy"])
    slices = {
        "young": ({"accuracy": 0.70}, {"accuracy": 0.75}),
        "old": ({"accuracy": 0.90}, {"accuracy": 0.89}),
        "empty": ({}, {}),
    }

    verdict = check_gates(gate, {"accuracy": 0.85}, {"accuracy": 0.84}, slices=slices)

    result = verdict.results[0]
    assert not result.passed
    assert "worst slice 'young' loses 0.05" in result.detail
    assert "over by 0.03" in result.detail
    assert "empty" in (result.note or "")
