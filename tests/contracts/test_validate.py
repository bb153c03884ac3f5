"""Checking a table against its contract: each rule, its failing-row count and a sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlcd.contracts import Contract, validate_file
from mlcd.contracts.report import render_junit, render_markdown

CONTRACT = {
    "path": "customers.parquet",
    "key": ["customer_id"],
    "rows": {"min": 100},
    "columns": {
        "customer_id": {"type": "string", "nullable": False},
        "tenure_months": {"type": "integer", "min": 0, "max": 72},
        "monthly_charges": {"type": "number", "min": 10, "max": 200},
        "contract": {"type": "string", "allowed": ["month-to-month", "one-year", "two-year"]},
        "total_charges": {"type": "number", "max_null_share": 0.05, "warn": True},
    },
    "checks": [{"name": "billing", "expr": "total_charges >= monthly_charges", "warn": True}],
}


def customers(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    monthly = rng.uniform(20, 120, n).round(2)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "contract": rng.choice(["month-to-month", "one-year", "two-year"], n),
            "total_charges": (tenure * monthly).round(2),
        }
    )


def check(tmp_path: Path, frame: pd.DataFrame, name: str = "customers.parquet") -> dict:  # type: ignore[type-arg]
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    report = validate_file(path, Contract.model_validate(CONTRACT), "customers")
    return {
        "report": report,
        "failed": {(r.check, r.column): r for r in report.results if not r.passed},
    }


def test_good_data_passes_every_check(tmp_path: Path) -> None:
    got = check(tmp_path, customers())
    report = got["report"]
    assert report.passed and not report.warnings and got["failed"] == {}
    assert report.rows == 1000 and len(report.results) >= 10
    assert "checks passed" in report.summary()


def test_a_renamed_column_is_named_with_its_likely_new_name(tmp_path: Path) -> None:
    got = check(tmp_path, customers().rename(columns={"monthly_charges": "monthly_charge"}))
    missing = got["failed"][("column", "monthly_charges")]
    assert "renamed to 'monthly_charge'?" in missing.message
    # the row check that needs it says so too (a warning: the check is warn-only)
    assert ("expr", "billing") in got["failed"]
    assert not got["report"].passed


def test_a_unit_change_breaks_the_range_with_the_failing_rows_counted(tmp_path: Path) -> None:
    frame = customers()
    frame.loc[:299, "monthly_charges"] *= 100  # cents instead of euros, for the newest rows
    got = check(tmp_path, frame)
    too_high = got["failed"][("max", "monthly_charges")]
    expected = int((frame["monthly_charges"] > 200).sum())
    assert too_high.failing_rows == expected and expected > 250
    assert too_high.level == "error" and len(too_high.sample) == 5
    assert all(row["monthly_charges"] > 200 for row in too_high.sample)
    assert "above the maximum 200" in too_high.message
    markdown = render_markdown(got["report"])
    assert "FAILED" in markdown and "monthly_charges" in markdown and f"{expected:,}" in markdown
    junit = render_junit([got["report"]])
    assert "<failure" in junit and "monthly_charges" in junit


def test_nulls_and_duplicates_in_the_key_fail(tmp_path: Path) -> None:
    frame = customers()
    frame.loc[[3, 4], "customer_id"] = None
    frame.loc[10, "customer_id"] = "c11"
    got = check(tmp_path, frame)
    assert got["failed"][("nullable", "customer_id")].failing_rows == 2
    keys = [r for r in got["report"].results if r.check == "key" and not r.passed]
    assert {r.failing_rows for r in keys} == {2, 1}  # two nulls, one duplicate


def test_categories_types_row_counts_and_warnings(tmp_path: Path) -> None:
    frame = customers(50)
    frame.loc[0, "contract"] = "weekly"
    frame["tenure_months"] = frame["tenure_months"].astype(str)
    frame.loc[:9, "total_charges"] = None  # 20% null: over the warn-only share
    got = check(tmp_path, frame)
    failed = got["failed"]
    assert failed[("allowed", "contract")].failing_rows == 1
    assert failed[("allowed", "contract")].sample[0]["contract"] == "weekly"
    assert "is string, the contract says integer" in failed[("type", "tenure_months")].message
    assert failed[("rows", None)].message == "50 rows, the contract says at least 100"
    share = failed[("null_share", "total_charges")]
    assert share.level == "warn" and share.failing_rows == 10
    assert {r.check for r in got["report"].warnings} >= {"null_share"}


def test_csv_files_are_checked_too(tmp_path: Path) -> None:
    frame = customers()
    frame.loc[5, "tenure_months"] = -3
    got = check(tmp_path, frame, "customers.csv")
    assert got["failed"][("min", "tenure_months")].failing_rows == 1


def test_bad_contracts_are_refused_when_read() -> None:
    with pytest.raises(ValidationError, match="cannot read 'total_charges => 1'"):
        Contract.model_validate({"path": "x.parquet", "checks": [{"expr": "total_charges => 1"}]})
    with pytest.raises(ValidationError, match=r"min .* is above max"):
        Contract.model_validate({"path": "x", "columns": {"a": {"min": 5, "max": 1}}})
    with pytest.raises(ValidationError, match="integer"):
        Contract.model_validate({"path": "x", "columns": {"a": {"type": "int64"}}})


def test_freshness_of_the_newest_row(tmp_path: Path) -> None:
    import time

    frame = customers(100)
    frame["exported_at"] = pd.to_datetime(time.time() - 3 * 86400, unit="s")
    frame.to_parquet(tmp_path / "c.parquet", index=False)
    stale = Contract.model_validate(
        {"path": "c.parquet", "freshness": {"column": "exported_at", "max_age": "2d"}}
    )
    [result] = validate_file(tmp_path / "c.parquet", stale).results
    assert not result.passed and "72.0 h old, at most 2d allowed" in result.message
    fresh = Contract.model_validate(
        {"path": "c.parquet", "freshness": {"column": "exported_at", "max_age": "4d"}}
    )
    assert validate_file(tmp_path / "c.parquet", fresh).passed
    with pytest.raises(ValidationError, match="not a duration"):
        Contract.model_validate({"path": "x", "freshness": {"column": "t", "max_age": "3 days"}})


def test_distribution_bounds_against_a_reference(tmp_path: Path) -> None:
    reference = customers(2000, seed=1)
    reference.to_parquet(tmp_path / "reference.parquet", index=False)
    same = customers(2000, seed=2)
    shifted = customers(2000, seed=3)
    shifted["monthly_charges"] = shifted["monthly_charges"] + 40  # a price rise
    shifted["contract"] = "month-to-month"
    rule = {
        "path": "c.parquet",
        "columns": {"monthly_charges": {}, "contract": {}, "tenure_months": {}},
        "distribution": {"reference": "reference.parquet", "max_wasserstein": 0.2},
    }
    contract = Contract.model_validate(rule)
    same.to_parquet(tmp_path / "c.parquet", index=False)
    assert validate_file(tmp_path / "c.parquet", contract, base=tmp_path).passed
    shifted.to_parquet(tmp_path / "c.parquet", index=False)
    report = validate_file(tmp_path / "c.parquet", contract, base=tmp_path)
    failed = {r.column: r for r in report.errors}
    assert set(failed) == {"monthly_charges", "contract"}
    assert "Wasserstein distance" in failed["monthly_charges"].message
    assert "Jensen-Shannon distance" in failed["contract"].message
