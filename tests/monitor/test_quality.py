"""Data quality: missing, out of range, unseen, invalid and rejected rows are counted, not crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcd.monitor.current import summarise_window
from mlcd.monitor.drift import DriftSettings, detect_drift
from mlcd.monitor.profile import build_profile, profile_from_file
from mlcd.monitor.quality import assess_quality
from mlcd.monitor.window import iter_file_chunks


def _reference(rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.uniform(18, 90, rows),
            "city": rng.choice(["paris", "oslo"], rows),
            "income": rng.normal(50, 10, rows),
        }
    )


def test_missing_out_of_range_and_unseen_values_are_counted_against_the_reference() -> None:
    reference = _reference()
    reference.loc[:99, "income"] = np.nan  # 10 % missing in training already
    current = _reference(500)
    current.loc[:49, "age"] = np.nan  # 10 %
    current.loc[50:149, "age"] = 150.0  # 100 ages above the training maximum
    current.loc[:199, "income"] = np.nan  # 40 %
    current.loc[:9, "city"] = "lima"  # 2 % unseen
    profile = build_profile(reference)
    report = assess_quality(profile, summarise_window(profile, [current]), 0.15, 0.1)
    by_name = {f.name: f for f in report.features}
    age, income, city = by_name["age"], by_name["income"], by_name["city"]
    assert (age.missing, age.out_of_range) == (50, 100)
    assert age.out_of_range_share == pytest.approx(100 / 450)
    assert income.missing_share == pytest.approx(0.4)
    assert income.reference_missing_share == pytest.approx(0.1)
    assert (city.unseen, city.unseen_examples) == (10, ["lima"])
    assert [b.split(":")[0] for b in report.breaches] == ["age", "income"]
    assert "outside the training range" in report.breaches[0]


def test_nan_only_column_and_empty_window_are_reported_not_crashes() -> None:
    profile = build_profile(_reference())
    current = _reference(300).assign(income=np.nan)
    window = summarise_window(profile, [current])
    drift = detect_drift(profile, window.columns, DriftSettings())
    income = next(f for f in drift.features if f.name == "income")
    assert (income.status, income.drifted, income.score) == ("no data", None, None)
    assert "no values in the current window" in income.reason
    assert "income: 100.0% missing" in assess_quality(profile, window).breaches[0]

    empty = summarise_window(profile, [])
    assert (empty.rows, empty.columns, empty.missing_columns) == (0, {}, [])
    empty_drift = detect_drift(profile, empty.columns, DriftSettings())
    assert (empty_drift.share, empty_drift.dataset_drift) == (0.0, False)
    assert assess_quality(profile, empty).breaches == []


def test_rejected_rows_are_counted_apart_and_left_out_of_drift() -> None:
    profile = build_profile(_reference())
    current = _reference(400).assign(status="ok", error=None)
    current.loc[:99, ["status", "error"]] = ["rejected", "age: not a number"]
    current.loc[:99, "age"] = np.nan
    window = summarise_window(profile, [current])
    assert (window.rows, window.rejected, window.accepted) == (400, 100, 300)
    assert window.rejection_errors == {"age: not a number": 100}
    assert window.columns["age"].missing == 0  # the rejected rows' inputs are not counted
    report = assess_quality(profile, window, max_missing_share=0.2)
    assert report.rejected_share == 0.25
    assert "the server rejected 100 of 400 rows" in report.breaches[-1]


def test_text_in_a_numeric_column_is_a_type_violation(tmp_path: Path) -> None:
    _reference().to_csv(tmp_path / "ref.csv", index=False)
    current = _reference(200).astype({"age": object})
    current.loc[:19, "age"] = "unknown"
    current.to_csv(tmp_path / "cur.csv", index=False)
    profile = profile_from_file(tmp_path / "ref.csv")
    window = summarise_window(profile, iter_file_chunks(tmp_path / "cur.csv", chunk_rows=64))
    age = window.columns["age"]
    assert (age.invalid, age.missing, age.count) == (20, 0, 180)
    feature = next(f for f in assess_quality(profile, window).features if f.name == "age")
    assert feature.missing_share == pytest.approx(0.1)  # invalid values count as unusable


def test_columns_missing_from_or_unknown_to_the_window_are_listed() -> None:
    profile = build_profile(_reference())
    current = _reference(100).drop(columns=["city"]).assign(surprise=1, label=0)
    window = summarise_window(profile, [current], ignore=["label"])
    assert window.missing_columns == ["city"]
    assert window.extra_columns == ["surprise"]
    assert "city: column missing from the window" in assess_quality(profile, window).breaches


def test_a_window_without_the_model_outputs_is_not_a_quality_breach() -> None:
    reference = _reference().assign(prediction=1)
    profile = build_profile(reference)
    window = summarise_window(profile, [_reference(100)])
    assert window.missing_columns == []
    assert assess_quality(profile, window).breaches == []
