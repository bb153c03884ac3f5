"""The no-forgetting gate: a candidate is checked on every recorded past window, not only the newest.

Two regimes of one task: in the original one the label follows ``x1``; after the shift the
customers sit elsewhere (``x1`` from 2 to 4) and the label follows ``x2``. A candidate trained
only on the shifted window beats the champion there (a plain champion-relative gate passes it)
but has forgotten the original regime: the no-forgetting gate refuses it and names the window.
A candidate trained on both regimes passes. Real models, real store, real reports and events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from mlcd.errors import ConfigError, GateFailed
from mlcd.evaluate import evaluate, parse_gate, promote
from mlcd.logdata.windows import list_windows, record_window
from mlcd.registry import resolve
from mlcd.store import events
from tests.serve.conftest import Registry

RELATIVE = "accuracy >= champion.accuracy - 0.01"
NO_FORGETTING = "no past window loses more than 0.02 accuracy"


def regime(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(2, 4, n) if shifted else rng.uniform(-2, 2, n)
    x2 = rng.uniform(-2, 2, n)
    y = (x2 > 0) if shifted else (x1 > 0)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y.astype(int)})


def fit(frame: pd.DataFrame) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=4, random_state=0).fit(frame[["x1", "x2"]], frame["y"])


@pytest.fixture
def history(registry: Registry) -> dict[str, object]:
    """Champion v1 trained on the original regime, its eval data recorded as a window."""
    old_train, old_eval = regime(800, 0, False), regime(400, 1, False)
    new_train, new_eval = regime(800, 2, True), regime(400, 3, True)
    sample = old_train[["x1", "x2"]].head(20)
    v1 = registry.register("churn", fit(old_train), sample)
    old_path = registry.root / "old_eval.parquet"
    old_eval.to_parquet(old_path)
    window, created = record_window(
        registry.store, registry.objects, "churn", old_path, version=v1, name="v1 old_eval.parquet"
    )
    assert created
    assert record_window(registry.store, registry.objects, "churn", old_path)[1] is False
    new_path = registry.root / "new_eval.parquet"
    new_eval.to_parquet(new_path)
    return {
        "v1": v1,
        "sample": sample,
        "old_train": old_train,
        "new_train": new_train,
        "new_path": new_path,
        "window": window,
    }


def _promote(registry: Registry, version: int, gates: list[str], data: Path, folder: Path):  # type: ignore[no-untyped-def]
    return promote(
        registry.store,
        registry.objects,
        "churn",
        version,
        "champion",
        gates=gates,
        data=data,
        target="y",
        report_dir=folder,
        resamples=200,
        cache_dir=registry.root / "cache",
    )


def test_forgetting_candidate_refused_where_the_relative_gate_alone_passes(
    registry: Registry, history: dict[str, object]
) -> None:
    new_path = history["new_path"]
    assert isinstance(new_path, Path)
    forgetful = registry.register(
        "churn",
        fit(history["new_train"]),
        history["sample"],
        alias=None,  # type: ignore[arg-type]
    )

    # The newest window alone: the candidate is far better than the champion there.
    plain = _promote(registry, forgetful, [RELATIVE], new_path, registry.root / "plain")
    assert plain.evaluation is not None and plain.evaluation.passed
    from mlcd.registry import set_alias

    set_alias(registry.store, "churn", "champion", int(history["v1"]))  # type: ignore[call-overload]

    with pytest.raises(GateFailed, match=r"past window 'v1 old_eval\.parquet' loses"):
        _promote(registry, forgetful, [RELATIVE, NO_FORGETTING], new_path, registry.root / "gated")
    assert resolve(registry.store, "churn@champion").version == history["v1"]
    evaluation = evaluate(
        registry.store,
        registry.objects,
        "churn",
        forgetful,
        data=new_path,
        target="y",
        gates=[RELATIVE, NO_FORGETTING],
        resamples=200,
        cache_dir=registry.root / "cache",
    )
    relative, windows = evaluation.verdict.results
    assert relative.passed
    assert not windows.passed
    assert "past window 'v1 old_eval.parquet'" in windows.detail
    assert windows.observed is not None and windows.observed > 0.3  # it forgot: ~0.5 lost
    # Backward transfer per window, with its paired bootstrap interval, beside the forward gain.
    [past] = evaluation.windows
    assert past["name"] == "v1 old_eval.parquet" and past["rows"] == 400
    delta = past["deltas"]["accuracy"]
    assert delta["high"] < 0 and delta["delta"] == pytest.approx(
        past["candidate"]["accuracy"] - past["champion"]["accuracy"]
    )
    assert evaluation.deltas["accuracy"].delta > 0.3
    # The reports and the event say the same.
    markdown = (registry.root / "gated" / "report.md").read_text()
    assert "No forgetting" in markdown and "v1 old_eval.parquet" in markdown
    junit = (registry.root / "gated" / "junit.xml").read_text()
    assert "v1 old_eval.parquet" in junit and "<failure" in junit
    assert "v1 old_eval.parquet" in (registry.root / "gated" / "report.html").read_text()
    with registry.store.read() as conn:
        recorded = events.query(conn, model="churn", kind="gate.failed", limit=1)[0]
    assert recorded["details"]["verdict"] == "failed"
    assert recorded["details"]["windows"][0]["name"] == "v1 old_eval.parquet"
    assert recorded["details"]["windows"][0]["deltas"]["accuracy"] < -0.3


def test_candidate_that_remembers_passes_and_the_current_data_is_not_a_past_window(
    registry: Registry, history: dict[str, object]
) -> None:
    new_path = history["new_path"]
    assert isinstance(new_path, Path)
    both = pd.concat([history["old_train"], history["new_train"]])  # type: ignore[list-item]
    keeper = registry.register("churn", fit(both), history["sample"], alias=None)  # type: ignore[arg-type]
    result = _promote(registry, keeper, [RELATIVE, NO_FORGETTING], new_path, registry.root / "r")
    assert result.evaluation is not None
    assert result.move is not None, result.evaluation.verdict.summary()
    assert resolve(registry.store, "churn@champion").version == keeper
    # Recording the newest eval data as a window does not make it a "past" window of itself.
    record_window(registry.store, registry.objects, "churn", new_path, name="v2 new_eval.parquet")
    assert [w.name for w in list_windows(registry.store, "churn", "eval")] == [
        "v1 old_eval.parquet",
        "v2 new_eval.parquet",
    ]
    again = evaluate(
        registry.store,
        registry.objects,
        "churn",
        history["v1"],  # type: ignore[arg-type]
        data=new_path,
        target="y",
        gates=[NO_FORGETTING],
        resamples=0,
        cache_dir=registry.root / "cache",
    )
    assert [w["name"] for w in again.windows] == ["v1 old_eval.parquet"]
    assert again.verdict.passed  # v1 on its own regime loses nothing against the keeper


def test_gate_without_windows_or_champion_passes_with_a_note_and_typos_fail() -> None:
    from mlcd.evaluate import check_gates

    gate = parse_gate(NO_FORGETTING)
    assert gate.kind == "windows" and gate.margin == 0.02 and gate.metric == "accuracy"
    verdict = check_gates([gate], {"accuracy": 0.9}, {"accuracy": 0.9}, windows={})
    assert verdict.passed and "no past windows recorded" in verdict.results[0].detail
    first = check_gates([gate], {"accuracy": 0.9}, None)
    assert first.passed and "no champion" in first.results[0].detail
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'"):
        parse_gate("no past window loses more than 0.02 acuracy")
