"""Column summaries built chunk by chunk: the one reduction behind profiles and windows.

A reference profile and a current window are summarised the same way, so their numbers
compare like for like. Memory stays bounded whatever the window's size: a chunk of rows is
reduced into counts, running moments and a sample of at most ``max_values`` values per
numeric column (a uniform sample without replacement once the cap is passed, kept by the
smallest of independent random keys, so every value has the same chance whatever the chunk
it came in). Counts (missing, out-of-range, bins, categories) are exact over every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlcd.stats import Floats, Ints

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["numeric", "categorical"]
#: Category kept as counted; values past ``max_categories`` distinct ones land in OTHER.
OTHER = "__other__"
DEFAULT_MAX_VALUES = 1_000_000
DEFAULT_MAX_CATEGORIES = 10_000


@dataclass(frozen=True)
class ColumnSummary:
    """What a column looked like over a reference set or a window."""

    name: str
    kind: Kind
    rows: int = 0
    missing: int = 0
    #: values that are not of the column's kind (text in a numeric column, a list, ...)
    invalid: int = 0
    # ---- numeric
    #: finite values, sorted: all of them, or a uniform sample when ``sampled``
    values: Floats | None = field(default=None, repr=False, compare=False)
    count: int = 0
    non_finite: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    #: counts per bin of the reference's binning (numeric), or None
    bin_counts: Ints | None = field(default=None, repr=False, compare=False)
    #: finite values below the reference minimum / above its maximum
    below: int = 0
    above: int = 0
    # ---- categorical
    categories: dict[str, int] = field(default_factory=dict, repr=False)
    #: values never seen in the reference (current windows only)
    unseen: int = 0

    @property
    def sampled(self) -> bool:
        """Whether ``values`` is a sample rather than every finite value."""
        return self.values is not None and self.values.size < self.count

    @property
    def present(self) -> int:
        """Rows with a usable value (not missing, not invalid, finite)."""
        if self.kind == "numeric":
            return self.count
        return self.rows - self.missing - self.invalid

    @property
    def out_of_range(self) -> int:
        """Values outside the reference range, infinities included."""
        return self.below + self.above + self.non_finite

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields (arrays and category counts left out)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "missing": self.missing,
            "invalid": self.invalid,
        }
        if self.kind == "numeric":
            out.update(
                count=self.count,
                sampled=self.sampled,
                non_finite=self.non_finite,
                min=self.min,
                max=self.max,
                mean=self.mean,
                std=self.std,
                below=self.below,
                above=self.above,
            )
        else:
            out.update(distinct=len(self.categories), unseen=self.unseen)
        return out


def category_text(value: Any) -> str:
    """The canonical text of a category value: ``1``, ``1.0`` and ``"1"`` are one category."""
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == int(value):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def as_categories(series: pd.Series) -> tuple[pd.Series, int]:
    """A column as canonical category strings (missing stays missing), and its invalid count."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        present = series.dropna()
        flags = present.to_numpy(dtype=bool)
        return pd.Series(np.where(flags, "True", "False"), index=present.index), 0
    if pd.api.types.is_integer_dtype(dtype):
        return series.dropna().astype("int64").astype(str), 0
    if pd.api.types.is_float_dtype(dtype):
        present = series.dropna()
        values = present.to_numpy(dtype=np.float64)
        integral = np.isfinite(values) & (values == np.trunc(values))
        if integral.all():
            return pd.Series(values.astype(np.int64).astype(str), index=present.index), 0
        return present.map(category_text), 0
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return series.dropna().astype(str), 0
    present = series.dropna()
    nested = present.map(lambda v: isinstance(v, list | dict | tuple | set | np.ndarray))
    invalid = int(nested.sum())
    return present[~nested].map(category_text), invalid


def as_numbers(series: pd.Series) -> tuple[Floats, int]:
    """A column as float64 (missing and unparseable values as NaN), and its invalid count."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), 0
    coerced = pd.to_numeric(series, errors="coerce")
    invalid = int((coerced.isna() & series.notna()).sum())
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan), invalid


class ColumnAccumulator:
    """Reduces the chunks of one column into a :class:`ColumnSummary`."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        *,
        binning: Any = None,
        bounds: tuple[float | None, float | None] = (None, None),
        known: frozenset[str] | None = None,
        max_values: int | None = DEFAULT_MAX_VALUES,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.kind: Kind = kind
        self.binning = binning
        self.bounds = bounds
        self.known = known
        self.max_values = max_values
        self.max_categories = max_categories
        self._rng = np.random.default_rng(seed)
        self.rows = self.missing = self.invalid = 0
        self.count = self.non_finite = self.below = self.above = 0
        self._min = math.inf
        self._max = -math.inf
        self._mean = 0.0
        self._m2 = 0.0
        self._parts: list[Floats] = []
        self._stored = 0
        self._keys: list[Floats] | None = None  # random keys, once the sample cap is passed
        # Keys at or above it cannot make the sample: at least ``cap`` smaller ones are held.
        self._threshold = math.inf
        self._bins: Ints | None = None  # bin counts of every finite value added
        self.categories: dict[str, int] = {}
        self.unseen = 0

    def add(self, series: pd.Series) -> None:
        """Fold one chunk of the column in."""
        self.rows += len(series)
        if self.kind == "numeric":
            values, invalid = as_numbers(series)
            self._add_numbers(values, invalid)
        else:
            self._add_categorical(series)

    def add_arrow(self, array: Any) -> None:
        """Fold one chunk of the column in, given as an Arrow (chunked) array.

        Numbers and text are read straight from Arrow (no pandas), with the same result as
        :meth:`add` on the column converted to pandas; other types go through pandas.
        """
        import pyarrow as pa

        kind = array.type
        if self.kind == "numeric" and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            self.rows += len(array)
            values = array.to_numpy(zero_copy_only=False)
            self._add_numbers(np.asarray(values, dtype=np.float64), 0)
        elif self.kind == "categorical" and (
            pa.types.is_string(kind) or pa.types.is_large_string(kind)
        ):
            self.rows += len(array)
            self._add_text(array)
        else:
            self.add(array.to_pandas())

    # ------------------------------------------------------------ numeric
    def _add_numbers(self, values: Floats, invalid: int) -> None:
        """``values`` as float64, NaN where missing or invalid (``invalid`` of them)."""
        self.invalid += invalid
        if values.size == 0:
            return
        # min and max propagate NaN: both finite means every value is (one pass each, and
        # the moments need them anyway), so the common chunk skips the masks.
        low, high = float(values.min()), float(values.max())
        if math.isfinite(low) and math.isfinite(high):
            finite = values
            self.missing -= invalid
        else:
            nan = int(np.count_nonzero(np.isnan(values)))
            self.missing += nan - invalid
            finite = values[np.isfinite(values)]
            self.non_finite += int(values.size - finite.size - nan)
            if finite.size == 0:
                return
            low, high = float(finite.min()), float(finite.max())
        self._moments(finite, low, high)
        lower, upper = self.bounds
        if lower is not None:
            self.below += int(np.count_nonzero(finite < lower))
        if upper is not None:
            self.above += int(np.count_nonzero(finite > upper))
        if self.binning is not None:
            counts = self.binning.count(finite)
            self._bins = counts if self._bins is None else self._bins + counts
        # No copy: the parts are concatenated (copied) once, when the summary is finished.
        self._keep(finite)

    def _moments(self, finite: Floats, low: float, high: float) -> None:
        # Chan et al.'s pairwise update: exact-enough variance in any chunking.
        n_b = finite.size
        mean_b = float(finite.mean())
        deviations = finite - mean_b
        m2_b = float(np.square(deviations, out=deviations).sum())
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self._mean
        self._mean += delta * n_b / total
        self._m2 += m2_b + delta * delta * n_a * n_b / total
        self.count = total
        self._min = min(self._min, low)
        self._max = max(self._max, high)

    def _keep(self, finite: Floats) -> None:
        cap = self.max_values
        if cap is None or (self._keys is None and self._stored + finite.size <= cap):
            self._parts.append(finite)
            self._stored += finite.size
            return
        if self._keys is None:
            # Past the cap: from now on every value has a random key, and the sample is the
            # ``cap`` values with the smallest keys.
            stored = np.concatenate([*self._parts, finite])
            self._parts, self._keys = [stored], [self._rng.random(stored.size)]
            self._stored = stored.size
            self._threshold = 1.0
        else:
            keys = self._rng.random(finite.size)
            # A key above the threshold can never make the sample: its value is not stored
            # (it was counted with its chunk), so most chunks store little.
            index = np.flatnonzero(keys < self._threshold)
            if index.size < finite.size:
                finite, keys = finite[index], keys[index]
            self._parts.append(finite)
            self._keys.append(keys)
            self._stored += finite.size
        # In bulk: at most 1.25 x cap values are held, and the cost is amortised.
        if self._stored >= cap + cap // 4:
            self._trim(cap)

    def _trim(self, cap: int) -> None:
        """Drop the values whose keys cannot make the sample any more, keeping a little more
        than ``cap`` without finding the cap-th key (a comparison pass instead of a partition).

        The held keys are uniform below the threshold, so a cut at ``threshold x target /
        held`` keeps about ``target`` of them; when at least ``cap`` keys fall below the cut,
        nothing at or above it can be among the ``cap`` smallest, now or later. Otherwise
        (a few standard deviations away) the exact partition decides.
        """
        assert self._keys is not None
        target = cap + cap // 16
        cut = self._threshold * target / self._stored
        chosen = [np.flatnonzero(keys < cut) for keys in self._keys]
        kept = sum(index.size for index in chosen)
        if kept < cap:  # too few below the cut (it is estimated): decide exactly
            self._shrink(cap)
            return
        values = np.concatenate([v[index] for v, index in zip(self._parts, chosen, strict=True)])
        self._parts = []  # the old parts can go before the keys are cut
        keys = np.concatenate([k[index] for k, index in zip(self._keys, chosen, strict=True)])
        self._parts, self._keys = [values], [keys]
        self._stored, self._threshold = kept, cut

    def _shrink(self, cap: int) -> None:
        """Keep the ``cap`` values with the smallest keys."""
        assert self._keys is not None
        stored = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        keys = np.concatenate(self._keys) if len(self._keys) > 1 else self._keys[0]
        if stored.size > cap:
            # The cap-th smallest key, then a mask: cheaper than sorting indices.
            kth = float(np.partition(keys, cap - 1)[cap - 1])
            keep = keys <= kth
            if int(np.count_nonzero(keep)) != cap:  # tied keys: pick exactly ``cap``
                order = np.argpartition(keys, cap - 1)
                keep = np.zeros(keys.size, dtype=bool)
                keep[order[:cap]] = True
            stored, keys = stored[keep], keys[keep]
            self._threshold = kth
        self._parts, self._keys, self._stored = [stored], [keys], stored.size

    # ------------------------------------------------------------ categorical
    def _add_categorical(self, series: pd.Series) -> None:
        texts, invalid = as_categories(series)
        self.invalid += invalid
        self.missing += len(series) - len(texts) - invalid
        if texts.empty:
            return
        counts = texts.value_counts(sort=False)
        self._count(counts.index.tolist(), counts.tolist())

    def _add_text(self, array: Any) -> None:
        """An Arrow string column: counted by Arrow, in order of first appearance (as pandas
        counts it), nulls as missing."""
        import pyarrow.compute as pc

        self.missing += array.null_count
        if array.null_count == len(array):
            return
        counts = pc.value_counts(array)
        keys = counts.field("values").to_pylist()
        values = counts.field("counts").to_pylist()
        if array.null_count:
            kept = [(k, v) for k, v in zip(keys, values, strict=True) if k is not None]
            keys, values = [k for k, _ in kept], [v for _, v in kept]
        self._count(keys, values)

    def _count(self, keys: list[Any], values: list[int]) -> None:
        for key, value in zip(keys, values, strict=True):
            if key in self.categories:
                self.categories[key] += int(value)
            elif len(self.categories) < self.max_categories:
                self.categories[key] = int(value)
            else:
                self.categories[OTHER] = self.categories.get(OTHER, 0) + int(value)
            if self.known is not None and key not in self.known:
                self.unseen += int(value)

    # ------------------------------------------------------------ result
    def finish(self) -> ColumnSummary:
        """The summary of everything added so far (sorts the kept values)."""
        if self.kind == "categorical":
            return ColumnSummary(
                name=self.name,
                kind="categorical",
                rows=self.rows,
                missing=self.missing,
                invalid=self.invalid,
                categories=dict(self.categories),
                unseen=self.unseen,
            )
        if self._keys is not None and self.max_values is not None:
            self._shrink(self.max_values)
        values = np.concatenate(self._parts) if self._parts else np.empty(0, dtype=np.float64)
        values.sort()
        has = self.count > 0
        bins = None
        if self.binning is not None:  # every value was counted in its chunk
            bins = self._bins if self._bins is not None else np.zeros(self.binning.size, np.int64)
        return ColumnSummary(
            name=self.name,
            kind="numeric",
            rows=self.rows,
            missing=self.missing,
            invalid=self.invalid,
            values=values,
            count=self.count,
            non_finite=self.non_finite,
            min=self._min if has else None,
            max=self._max if has else None,
            mean=self._mean if has else None,
            std=math.sqrt(self._m2 / self.count) if has else None,
            bin_counts=bins,
            below=self.below,
            above=self.above,
        )


def workers() -> int:
    """Threads for column-parallel work: every core (numpy sorts release the GIL)."""
    import os

    return max(1, min(32, os.cpu_count() or 1))


def map_columns(work: Any, items: list[Any], pool: Any = None) -> list[Any]:
    """``[work(item) for item in items]`` on a thread per core (``pool``, an executor kept
    for a whole pass, or one started for this call), in order."""
    if len(items) <= 1 or workers() == 1:
        return [work(item) for item in items]
    if pool is not None:
        return list(pool.map(work, items))
    with column_pool() as own:
        return list(own.map(work, items))


def column_pool() -> Any:
    """A thread pool for :func:`map_columns`, to keep over many chunks (a ``with`` block)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="mlcd-monitor")
