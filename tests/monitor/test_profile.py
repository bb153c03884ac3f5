"""Reference profiles: computed once, stored by digest, read back identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcd.digest import Digest
from mlcd.errors import MonitorError, ObjectNotFound
from mlcd.monitor.current import summarise_window
from mlcd.monitor.profile import (
    MAGIC,
    ReferenceProfile,
    build_profile,
    compute_reference_profile,
    load_profile,
    profile_from_file,
)
from mlcd.objects import LocalObjectStore
from tests.monitor.conftest import frame


def _mixed(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = frame(rows, seed, columns=3)
    data["city"] = rng.choice(["paris", "oslo", "lima"], rows)
    data["flag"] = rng.random(rows) < 0.3
    data.loc[data.index[::17], "x1"] = np.nan
    data["request_id"] = [f"r{i}" for i in range(rows)]  # bookkeeping: never profiled
    return data


def test_profile_is_stored_once_and_read_back_identical(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    data = _mixed(5000, 1)
    digest = compute_reference_profile(data, objects)
    assert compute_reference_profile(data, objects) == digest  # same data, same digest
    profile = load_profile(objects, str(digest))
    assert list(profile.features) == ["x0", "x1", "x2", "city", "flag"]
    assert profile.rows == 5000
    x1 = profile.features["x1"].summary
    assert (x1.missing, x1.count) == (295, 4705)
    assert x1.std == pytest.approx(float(np.nanstd(data["x1"])), rel=1e-12)
    assert np.array_equal(profile.features["x0"].values, np.sort(data["x0"].to_numpy()))
    assert profile.features["city"].summary.categories == data["city"].value_counts().to_dict()
    assert profile.features["flag"].kind == "categorical"
    assert profile.to_bytes() == build_profile(data).to_bytes()


def test_reference_sample_is_capped_and_uniform() -> None:
    data = pd.DataFrame({"v": np.arange(200_000, dtype=float)})
    profile = build_profile(data, sample_size=10_000)
    feature = profile.features["v"]
    assert feature.values.size == 10_000 and feature.summary.sampled
    assert feature.summary.count == 200_000  # moments and counts stay exact
    assert feature.summary.mean == pytest.approx(99_999.5)
    # a uniform sample of 0..199999 has its deciles near the population's
    assert np.quantile(feature.values, 0.5) == pytest.approx(100_000, rel=0.03)
    assert int(feature.summary.bin_counts.sum()) == 10_000


def test_chunked_summary_equals_one_chunk() -> None:
    reference = _mixed(3000, 2)
    current = _mixed(4000, 3)
    profile = build_profile(reference)
    whole = summarise_window(profile, [current])
    parts = summarise_window(profile, [current.iloc[i : i + 700] for i in range(0, 4000, 700)])
    for name, column in whole.columns.items():
        other = parts.columns[name]
        assert column.categories == other.categories
        assert (column.rows, column.missing, column.count) == (
            other.rows,
            other.missing,
            other.count,
        )
        if column.values is not None:
            assert column.std == pytest.approx(other.std, rel=1e-12)
            assert np.array_equal(column.values, other.values)
            assert np.array_equal(column.bin_counts, other.bin_counts)


def test_capped_window_keeps_exact_counts_and_bins() -> None:
    profile = build_profile(frame(5000, 1, columns=1))
    current = frame(50_000, 2, columns=1, shift={"x0": 3.5})
    exact = summarise_window(profile, [current], max_values=None).columns["x0"]
    capped = summarise_window(
        profile, [current.iloc[i : i + 5000] for i in range(0, 50_000, 5000)], max_values=2000
    ).columns["x0"]
    assert capped.values.size == 2000 and capped.sampled
    assert (capped.count, capped.above, capped.below) == (exact.count, exact.above, exact.below)
    assert np.array_equal(capped.bin_counts, exact.bin_counts)
    assert capped.mean == pytest.approx(exact.mean)


def test_profile_from_csv_and_parquet_files_agree(tmp_path: Path) -> None:
    data = _mixed(2000, 4).drop(columns=["flag"])
    data.to_csv(tmp_path / "ref.csv", index=False)
    data.to_parquet(tmp_path / "ref.parquet", index=False)
    from_csv = profile_from_file(tmp_path / "ref.csv", exclude=["x2"])
    from_parquet = profile_from_file(tmp_path / "ref.parquet", exclude=["x2"])
    assert list(from_csv.features) == ["x0", "x1", "city"]
    for name in from_csv.features:
        a, b = from_csv.features[name], from_parquet.features[name]
        assert np.allclose(a.values, b.values, rtol=1e-15)
        assert a.summary.categories == b.summary.categories
    assert from_csv.source["path"].endswith("ref.csv")


def test_reference_without_rows_or_columns_is_refused() -> None:
    with pytest.raises(MonitorError, match="no rows"):
        build_profile(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    with pytest.raises(MonitorError, match="no column to profile"):
        build_profile(pd.DataFrame({"request_id": ["a"], "ts": [1.0]}))


def test_bytes_that_are_not_a_profile_are_refused(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(MonitorError, match="not a reference profile"):
        load_profile(objects, objects.put_bytes(b"hello"))
    future = MAGIC + (17).to_bytes(8, "little") + b'{"schema": 99}   '
    with pytest.raises(MonitorError, match="schema 99 is not supported"):
        ReferenceProfile.from_bytes(future)
    with pytest.raises(ObjectNotFound):
        load_profile(objects, Digest("0" * 64))
