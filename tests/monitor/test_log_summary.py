"""The fast path of ``mlcd monitor`` over the prediction log gives the same numbers.

The log is summarised straight from Arrow tables, on a lane of threads per core, with bins
counted per chunk and the reservoir sample trimmed from an estimated cut: each of these is
held here to what it replaces — the definition of the sample (the values with the smallest
random keys), ``bincount(assign(x))`` for bins, and the pandas path of
:func:`summarise_window` for the whole window summary.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlcd.monitor.current import summarise_window
from mlcd.monitor.profile import Binning, build_profile
from mlcd.monitor.summary import ColumnAccumulator, ColumnSummary
from mlcd.monitor.window import LogReader, Window, find_segments, summarise_log
from tests.monitor.conftest import PredictionLogDir

NOW = 1_760_000_000.0


def _defined(values: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """The sample by its definition: the i-th finite value gets the i-th draw of the seeded
    generator as its key; the ``cap`` smallest keys win (every value when there are fewer)."""
    finite = values[np.isfinite(values)]
    if cap is None or finite.size <= cap:
        return np.sort(finite)
    keys = np.random.default_rng(seed).random(finite.size)
    return np.sort(finite[np.argsort(keys, kind="stable")[:cap]])


@pytest.mark.parametrize("cap", [1, 7, 50, 2000, None])
@pytest.mark.parametrize("seed", [0, 3])
def test_sample_is_the_values_with_the_smallest_keys_in_any_chunking(
    cap: int | None, seed: int
) -> None:
    rng = np.random.default_rng(seed + 100)
    values = rng.standard_normal(30_000)
    values[rng.integers(0, values.size, 40)] = np.nan
    values[rng.integers(0, values.size, 10)] = np.inf
    binning = Binning(edges=tuple(np.sort(rng.standard_normal(9))))
    expected = _defined(values, cap, seed)
    finite = values[np.isfinite(values)]
    for sizes in ([30_000], [1] * 50 + [29_950], list(rng.integers(0, 3000, 40))):
        acc = ColumnAccumulator("x", "numeric", binning=binning, max_values=cap, seed=seed)
        start = 0
        for size in [*sizes, values.size]:
            part = values[start : start + int(size)]
            start += part.size
            acc.add_arrow(pa.array(part))
        summary = acc.finish()
        assert summary.values is not None and np.array_equal(summary.values, expected)
        assert summary.count == finite.size
        assert summary.non_finite == int(np.isinf(values).sum())
        assert np.array_equal(
            summary.bin_counts, np.bincount(binning.assign(finite), minlength=binning.size)
        )


def test_bins_count_as_assign_does_for_quantile_and_discrete_binnings() -> None:
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal(5000), 1)
    for binning in (
        Binning(edges=tuple(np.unique(np.round(rng.standard_normal(9), 1)))),
        Binning(edges=()),
        Binning(values=(-1.0, -0.0, 0.5, 2.0)),
    ):
        expected = np.bincount(binning.assign(x), minlength=binning.size)
        assert np.array_equal(binning.count(x), expected)
        assert np.array_equal(binning.count(x[:0]), np.zeros(binning.size, dtype=np.int64))


def _same(a: ColumnSummary, b: ColumnSummary) -> None:
    for name in ("rows", "missing", "invalid", "count", "non_finite", "below", "above"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("min", "max", "mean", "std"):
        x, y = getattr(a, name), getattr(b, name)
        assert x == y or (x is not None and math.isnan(x) and y is not None and math.isnan(y))
    assert list(a.categories.items()) == list(b.categories.items())  # order too
    assert a.unseen == b.unseen
    if a.values is not None or b.values is not None:
        assert np.array_equal(a.values, b.values)
    if a.bin_counts is not None or b.bin_counts is not None:
        assert np.array_equal(a.bin_counts, b.bin_counts)


@pytest.mark.parametrize(
    "array",
    [
        pa.array([1.5, None, float("nan"), float("inf"), -2.0, 7.0] * 50),
        pa.array([1, None, 3, -4, 2**40] * 50, pa.int64()),
        pa.array([1, 2, 3] * 50, pa.int32()),
        pa.array([True, None, False] * 50),
        pa.array(["2", "x", None, "3.5"] * 50),
    ],
    ids=["float", "int-nulls", "int32", "bool", "text"],
)
def test_arrow_numeric_columns_summarise_as_their_pandas_column(array: pa.Array) -> None:
    binning = Binning(edges=(-1.0, 0.0, 2.0))
    fast = ColumnAccumulator("c", "numeric", binning=binning, bounds=(-1.0, 3.0), max_values=60)
    slow = ColumnAccumulator("c", "numeric", binning=binning, bounds=(-1.0, 3.0), max_values=60)
    for start in range(0, len(array), 70):
        part = array.slice(start, 70)
        fast.add_arrow(part)
        slow.add(pa.table({"c": part}).to_pandas()["c"])
    _same(fast.finish(), slow.finish())


@pytest.mark.parametrize("limit", [2, 10_000])
def test_arrow_text_columns_count_categories_in_pandas_order(limit: int) -> None:
    rng = np.random.default_rng(2)
    known = frozenset({"paris", "lyon"})
    fast = ColumnAccumulator("c", "categorical", known=known, max_categories=limit)
    slow = ColumnAccumulator("c", "categorical", known=known, max_categories=limit)
    for _ in range(8):
        names = rng.choice(["nice", "paris", "", "lyon", "oslo", "lima"], 300)
        part = pa.array([None if rng.random() < 0.05 else str(v) for v in names], pa.string())
        fast.add_arrow(part)
        slow.add(pa.table({"c": part}).to_pandas()["c"])
    _same(fast.finish(), slow.finish())
    ints = ColumnAccumulator("c", "categorical")
    ints.add_arrow(pa.array([1, 2, None, 2]))  # not text: through pandas, as before
    assert ints.finish().categories == {"1": 1, "2": 2}


def _log(rows: int, seed: int, start: float, version: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "ts": np.sort(start + rng.uniform(0, 1000, rows)),
            "x0": rng.standard_normal(rows) + (0.5 if version == 2 else 0.0),
            "x1": rng.standard_normal(rows),
            "n": rng.integers(0, 3, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows),
            "prediction": rng.integers(0, 2, rows),
            "status": np.where(rng.random(rows) < 0.05, "rejected", "ok"),
            "error": None,
        }
    )
    data.loc[data.index[::13], "x1"] = np.nan
    data.loc[data.index[::29], "city"] = None
    rejected = data["status"] == "rejected"
    data.loc[rejected, "error"] = rng.choice(["too big", "bad type"], int(rejected.sum()))
    data.loc[data.index[rejected][::3], "error"] = None
    data["extra"] = 1.0
    return data


@pytest.mark.parametrize(
    ("window", "version"),
    [
        (Window(NOW - 10_000, NOW), None),  # every segment whole
        (Window(NOW - 2500, NOW - 200), None),  # cuts through segments
        (Window(NOW - 10_000, NOW), 2),
        (Window(end=NOW, last=3000), None),
    ],
    ids=["whole", "cut", "version", "last"],
)
def test_log_summary_equals_the_pandas_window_summary(
    log_dir: PredictionLogDir, window: Window, version: int | None
) -> None:
    reference = _log(4000, 1, NOW - 50_000, 1).drop(columns=["ts", "status", "error", "extra"])
    profile = build_profile(reference, kinds={"n": "categorical"})
    for index in range(6):
        v = 1 + index % 2
        log_dir.write("m", v, _log(1500 + 300 * index, 10 + index, NOW - 3000 + 400 * index, v))
    with log_dir.store.read() as conn:
        segments = find_segments(conn, "m", window, version)

    def reader() -> LogReader:
        return LogReader(log_dir.root, segments, window, version=version, chunk_rows=700)

    slow = summarise_window(profile, reader(), max_values=900)
    for lanes in (1, 2, 3):
        fast = summarise_log(profile, reader().tables(), max_values=900, lanes=lanes)
        assert fast.rows == slow.rows > 0 and fast.rejected == slow.rejected > 0
        assert list(fast.rejection_errors.items()) == list(slow.rejection_errors.items())
        assert list(fast.versions.items()) == list(slow.versions.items())
        assert (fast.first_at, fast.last_at) == (slow.first_at, slow.last_at)
        assert (fast.missing_columns, fast.extra_columns) == (
            slow.missing_columns,
            slow.extra_columns,
        )
        assert list(fast.columns) == list(slow.columns)
        for name, column in slow.columns.items():
            _same(fast.columns[name], column)


def test_window_rows_equal_the_pushed_down_scan(log_dir: PredictionLogDir) -> None:
    from mlcd.logdata.segments import locate, scan

    data = _log(3000, 3, NOW - 2000, 1)
    data.loc[data.index[::50], "ts"] = np.nan  # a missing time is outside every window
    data["version"] = pd.array([1, 2, None] * 1000, dtype="Int64")
    path = log_dir.write("m", None, data)
    location = locate(log_dir.root, path.relative_to(log_dir.root).as_posix())
    for window, version in [
        (Window(NOW - 1500, NOW - 1200), None),
        (Window(NOW - 5000, NOW), 2),
        (Window(NOW - 5000, NOW), None),
    ]:
        with log_dir.store.read() as conn:
            segments = find_segments(conn, "m", window, version)
        got = pa.concat_tables(
            LogReader(log_dir.root, segments, window, version=version, chunk_rows=500).tables()
        )
        expected = pa.Table.from_batches(
            list(scan(location, None, start=window.start, end=window.end, version=version))
        )
        assert got.num_rows > 0
        assert got.equals(expected)
