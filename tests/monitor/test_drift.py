"""Drift per column and for the dataset: the right columns flagged, the right error rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcd.config import parse_config
from mlcd.errors import ConfigError
from mlcd.monitor.current import summarise_window
from mlcd.monitor.drift import DriftSettings, detect_drift
from mlcd.monitor.profile import build_profile
from tests.monitor.conftest import frame


def _drift(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings | None = None):
    profile = build_profile(reference)
    window = summarise_window(profile, [current])
    return detect_drift(profile, window.columns, settings or DriftSettings())


@pytest.mark.parametrize("rows", [600, 5_000])  # KS (≤ 1000 rows) and Wasserstein (above)
def test_known_shift_in_two_of_ten_features_flags_exactly_those(rows: int) -> None:
    reference = frame(rows, seed=1)
    current = frame(rows, seed=2, shift={"x3": 0.6, "x7": -0.6})
    report = _drift(reference, current)
    assert sorted(f.name for f in report.drifted) == ["x3", "x7"]
    assert {f.method for f in report.features} == {"ks" if rows <= 1000 else "wasserstein"}
    assert report.share == pytest.approx(0.2)
    assert not report.dataset_drift  # 20 % < the default share threshold of 50 %


def test_categorical_shift_is_flagged_by_chi_square_and_jensen_shannon() -> None:
    rng = np.random.default_rng(5)
    for rows, method in ((800, "chisquare"), (8_000, "jensenshannon")):
        reference = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], rows)})
        stable = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], rows)})
        shifted = pd.DataFrame(
            {"colour": rng.choice(["red", "green", "blue"], rows, p=[0.7, 0.2, 0.1])}
        )
        assert not _drift(reference, stable).features[0].drifted
        result = _drift(reference, shifted).features[0]
        assert (result.method, result.drifted) == (method, True)


@pytest.mark.slow
def test_false_positive_rate_of_tests_stays_near_the_configured_level() -> None:
    # 300 trials x 10 features of two samples from one distribution: KS at 5 % should flag
    # about 5 % of them (binomial sd over 3,000 tests is 0.4 %).
    flagged = tested = 0
    for trial in range(300):
        report = _drift(frame(400, seed=2 * trial), frame(300, seed=2 * trial + 1))
        flagged += len(report.drifted)
        tested += len(report.tested)
    assert 0.035 <= flagged / tested <= 0.065


def test_false_positive_rate_follows_a_configured_level() -> None:
    settings = DriftSettings(thresholds={"ks": 0.2})
    flagged = tested = 0
    for trial in range(60):
        report = _drift(frame(300, seed=7 * trial), frame(200, seed=7 * trial + 1), settings)
        flagged += len(report.drifted)
        tested += len(report.tested)
    # 600 tests at 20 %: sd 1.6 %, so [14 %, 26 %] is a wide, safe band
    assert 0.14 <= flagged / tested <= 0.26


def test_default_method_follows_type_and_sample_size() -> None:
    rng = np.random.default_rng(0)

    def data(rows: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "amount": rng.standard_normal(rows),
                "city": rng.choice(["a", "b", "c"], rows),
                "level": rng.integers(0, 3, rows),  # numeric with 3 distinct values
            }
        )

    small = {f.name: f.method for f in _drift(data(500), data(500)).features}
    large = {f.name: f.method for f in _drift(data(3000), data(3000)).features}
    assert small == {"amount": "ks", "city": "chisquare", "level": "chisquare"}
    assert large == {"amount": "wasserstein", "city": "jensenshannon", "level": "jensenshannon"}


def test_methods_and_thresholds_come_from_mlcd_yaml() -> None:
    config = parse_config(
        """
monitor:
  drift:
    numeric_method: psi
    thresholds: {psi: 0.5}
    share_threshold: 0.1
    features:
      x1: {method: ks, threshold: 0.01}
"""
    )
    settings = DriftSettings.from_config(config.monitor.drift)
    report = _drift(frame(3000, 1), frame(3000, 2, shift={"x0": 0.3, "x1": 0.3}), settings)
    by_name = {f.name: f for f in report.features}
    assert (by_name["x0"].method, by_name["x0"].threshold) == ("psi", 0.5)
    assert (by_name["x1"].method, by_name["x1"].threshold) == ("ks", 0.01)
    assert "monitor.drift.features.x1.method" in by_name["x1"].reason
    assert [f.name for f in report.drifted] == ["x1"]  # PSI of a 0.3 shift stays under 0.5
    assert report.dataset_drift  # 1 of 10 reaches the 10 % share threshold


def test_numeric_only_method_on_a_categorical_column_is_a_config_error() -> None:
    reference = pd.DataFrame({"city": ["a", "b"] * 50})
    with pytest.raises(ConfigError, match="'ks' needs a numeric column") as info:
        _drift(reference, reference, DriftSettings(categorical_method="ks"))
    assert "chisquare, psi or jensenshannon" in (info.value.hint or "")


def test_every_statistic_is_reported_and_the_deciding_one_matches() -> None:
    result = _drift(frame(2000, 1), frame(2000, 2, shift={"x0": 0.5})).features[0]
    assert set(result.statistics) == {
        "ks",
        "wasserstein",
        "wasserstein_raw",
        "psi",
        "jensenshannon",
        "chisquare",
    }
    assert result.score == result.statistics["wasserstein"]
    assert len(result.distribution["reference"]) == len(result.distribution["current"])


def test_prediction_column_drift_is_reported_apart_from_features() -> None:
    reference = frame(2000, 1, columns=3).assign(prediction=lambda d: (d["x0"] > 0).astype(int))
    current = frame(2000, 2, columns=3).assign(prediction=lambda d: (d["x0"] > -1).astype(int))
    report = _drift(reference, current)
    assert [f.name for f in report.features] == ["x0", "x1", "x2"]
    assert [p.name for p in report.predictions] == ["prediction"]
    assert report.prediction_drift
