"""The reference profile: what the training data looked like, computed once and stored.

A profile keeps, per column, the counts and moments of :class:`ColumnSummary`, a sorted
sample of numeric values (every value up to ``sample_size``), the binning PSI and
Jensen–Shannon use, and the categories with their counts. It is stored as one object
(content-addressed, so the same data gives the same digest) and its digest goes into
``model_versions.reference_digest``; monitoring then never re-reads the training set.

The stored bytes are ``MAGIC``, an 8-byte little-endian header length, a JSON header and the
float64 samples back to back. No pickle: a profile is data, safe to load from anywhere.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlcd.errors import MonitorError
from mlcd.monitor.summary import (
    DEFAULT_MAX_CATEGORIES,
    ColumnAccumulator,
    ColumnSummary,
    Kind,
    map_columns,
)
from mlcd.stats import Floats, Ints, run_ends

if TYPE_CHECKING:
    import pandas as pd

    from mlcd.digest import Digest
    from mlcd.objects import ObjectStore

MAGIC = b"MLCDPROF"
SCHEMA = 1
#: Numeric values kept per column in a profile (sorted); above it a uniform sample.
DEFAULT_SAMPLE_SIZE = 100_000
#: Equal-frequency bins of the reference that PSI and Jensen–Shannon count values into.
DEFAULT_BINS = 10
#: A numeric column with at most this many distinct values is binned per value.
MAX_DISCRETE = 20
#: Columns of the prediction log that describe the request, not the model's inputs.
LOG_COLUMNS = ("request_id", "ts", "model", "version", "status", "error", "latency_ms")
#: Columns that hold the model's output: profiled and drift-tested as "prediction".
PREDICTION_COLUMNS = ("prediction", "proba")

Role = Literal["feature", "prediction"]


@dataclass(frozen=True)
class Binning:
    """How a numeric column is cut into bins: reference quantile edges, or its few values.

    Quantile bins are ``(-inf, e0], (e0, e1], ..., (ek, inf)``: values outside the training
    range land in the outer bins. Discrete bins are one per value plus a last bin for
    values the reference never had.
    """

    edges: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    @property
    def discrete(self) -> bool:
        """Whether bins are the reference's distinct values."""
        return bool(self.values)

    @property
    def size(self) -> int:
        """The number of bins."""
        return len(self.values) + 1 if self.discrete else len(self.edges) + 1

    def assign(self, x: Floats) -> Ints:
        """The bin index of each value."""
        if self.discrete:
            values = np.asarray(self.values)
            index = np.minimum(np.searchsorted(values, x), len(values) - 1)
            return np.where(values[index] == x, index, len(values)).astype(np.int64)
        return np.searchsorted(np.asarray(self.edges), x, side="left").astype(np.int64)

    def count(self, x: Floats) -> Ints:
        """Counts per bin of finite values in any order: ``bincount(assign(x))``, as one
        comparison pass per edge or value (cheaper than a binary search per value for the
        few bins a profile has)."""
        if self.discrete:
            inside = np.fromiter(
                (np.count_nonzero(x == v) for v in self.values), np.int64, len(self.values)
            )
            return np.append(inside, x.size - inside.sum()).astype(np.int64)
        # value <= edge i  <=>  its bin is at most i (bins are (e[i-1], e[i]], edges unique)
        cumulative = np.fromiter(
            (np.count_nonzero(x <= e) for e in self.edges), np.int64, len(self.edges)
        )
        return np.diff(np.concatenate(([0], cumulative, [x.size]))).astype(np.int64)

    def count_sorted(self, values: Floats) -> Ints:
        """Counts per bin of sorted values."""
        if self.discrete:
            points = np.asarray(self.values)
            inside = np.searchsorted(values, points, "right") - np.searchsorted(values, points)
            return np.append(inside, values.size - inside.sum()).astype(np.int64)
        cuts = np.searchsorted(values, np.asarray(self.edges), side="right")
        return np.diff(np.concatenate(([0], cuts, [values.size]))).astype(np.int64)

    def labels(self) -> list[str]:
        """A readable name for each bin."""
        if self.discrete:
            return [f"{v:g}" for v in self.values] + ["other"]
        if not self.edges:
            return ["all"]
        e = self.edges
        inner = [f"({e[i - 1]:.4g}, {e[i]:.4g}]" for i in range(1, len(e))]
        return [f"≤ {e[0]:.4g}", *inner, f"> {e[-1]:.4g}"]

    @classmethod
    def from_sorted(cls, values: Floats, bins: int, ends: Ints | None = None) -> Binning:
        """Per-value bins for a few distinct values, else ``bins`` equal-frequency bins."""
        ends = run_ends(values) if ends is None else ends
        if values.size == 0:
            return cls()
        if ends.size <= MAX_DISCRETE:
            return cls(values=tuple(float(v) for v in values[ends - 1]))
        # Linear-interpolated quantiles read straight off the sorted values (no partition).
        position = (values.size - 1) * np.linspace(0, 1, bins + 1)[1:-1]
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, values.size - 1)
        quantiles = values[low] + (position - low) * (values[high] - values[low])
        return cls(edges=tuple(float(q) for q in np.unique(quantiles)))

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Binning:
        return cls(tuple(data.get("edges", ())), tuple(data.get("values", ())))


@dataclass(frozen=True)
class FeatureProfile:
    """One column of the reference: its summary, binning and role."""

    summary: ColumnSummary
    binning: Binning | None = None
    role: Role = "feature"

    @property
    def name(self) -> str:
        """The column name."""
        return self.summary.name

    @property
    def kind(self) -> Kind:
        """``numeric`` or ``categorical``."""
        return self.summary.kind

    @property
    def values(self) -> Floats:
        """The sorted reference sample (numeric)."""
        values = self.summary.values
        return values if values is not None else np.empty(0, dtype=np.float64)

    @cached_property
    def ends(self) -> Ints:
        """Run ends of the sorted sample (its distinct values and their CDF counts)."""
        return run_ends(self.values)

    @property
    def distinct(self) -> int:
        """Distinct values in the sample (numeric) or categories (categorical)."""
        return int(self.ends.size) if self.kind == "numeric" else len(self.summary.categories)

    @property
    def known(self) -> frozenset[str]:
        """The reference categories."""
        return frozenset(self.summary.categories)

    def accumulator(
        self, max_values: int | None, seed: int = 0, max_categories: int = DEFAULT_MAX_CATEGORIES
    ) -> ColumnAccumulator:
        """An accumulator that summarises a current window of this column against it."""
        s = self.summary
        return ColumnAccumulator(
            self.name,
            self.kind,
            binning=self.binning,
            bounds=(s.min, s.max),
            known=self.known if self.kind == "categorical" else None,
            max_values=max_values,
            max_categories=max_categories,
            seed=seed,
        )


@dataclass(frozen=True)
class ReferenceProfile:
    """Every column of the reference data, ready to compare windows against."""

    features: dict[str, FeatureProfile]
    rows: int
    sample_size: int | None = DEFAULT_SAMPLE_SIZE
    bins: int = DEFAULT_BINS
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> list[str]:
        """Columns that are model inputs."""
        return [n for n, f in self.features.items() if f.role == "feature"]

    @property
    def outputs(self) -> list[str]:
        """Columns that are model outputs (prediction, proba)."""
        return [n for n, f in self.features.items() if f.role == "prediction"]

    # ------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        """The canonical stored form (same profile, same bytes, same digest)."""
        arrays: list[Floats] = []
        offset = 0
        columns = []
        for feature in self.features.values():
            s = feature.summary
            entry: dict[str, Any] = {**s.to_dict(), "role": feature.role}
            entry.pop("sampled", None)
            entry.pop("distinct", None)
            if s.kind == "numeric":
                values = feature.values
                entry["values"] = [offset, int(values.size)]
                arrays.append(np.ascontiguousarray(values, dtype="<f8"))
                offset += int(values.size)
                entry["binning"] = feature.binning.to_dict() if feature.binning else None
                entry["bin_counts"] = (
                    [int(c) for c in s.bin_counts] if s.bin_counts is not None else None
                )
            else:
                entry["categories"] = dict(sorted(s.categories.items()))
            columns.append(entry)
        header = {
            "format": "mlcd-profile",
            "schema": SCHEMA,
            "rows": self.rows,
            "sample_size": self.sample_size,
            "bins": self.bins,
            "source": self.source,
            "columns": columns,
        }
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return b"".join([MAGIC, struct.pack("<Q", len(head)), head, *(a.tobytes() for a in arrays)])

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        """Read the stored form.

        Raises:
            MonitorError: the bytes are not a profile this version understands.
        """
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
            raise MonitorError(
                "not a reference profile (bad magic bytes)",
                hint="the digest in model_versions.reference_digest must point at a profile "
                "made by mlcd.monitor.compute_reference_profile",
            )
        (length,) = struct.unpack_from("<Q", data, len(MAGIC))
        start = len(MAGIC) + 8
        try:
            header = json.loads(data[start : start + length])
        except ValueError as exc:
            raise MonitorError("reference profile header is not valid JSON") from exc
        if header.get("schema") != SCHEMA:
            raise MonitorError(
                f"reference profile schema {header.get('schema')} is not supported "
                f"(this mlcd reads schema {SCHEMA})",
                hint="recompute the profile with this version of mlcd",
            )
        blob = np.frombuffer(data, dtype="<f8", offset=start + length)
        features = {}
        for entry in header["columns"]:
            features[entry["name"]] = _feature_from_dict(entry, blob)
        return cls(
            features=features,
            rows=int(header["rows"]),
            sample_size=header.get("sample_size"),
            bins=int(header.get("bins", DEFAULT_BINS)),
            source=dict(header.get("source") or {}),
        )


def _feature_from_dict(entry: dict[str, Any], blob: Floats) -> FeatureProfile:
    kind = entry["kind"]
    common = {k: entry.get(k, 0) for k in ("rows", "missing", "invalid")}
    if kind == "categorical":
        summary = ColumnSummary(
            entry["name"], "categorical", **common, categories=dict(entry["categories"])
        )
        return FeatureProfile(summary, None, entry.get("role", "feature"))
    offset, size = entry["values"]
    values = np.array(blob[offset : offset + size], dtype=np.float64)
    bins = entry.get("bin_counts")
    summary = ColumnSummary(
        entry["name"],
        "numeric",
        **common,
        values=values,
        count=int(entry["count"]),
        non_finite=int(entry.get("non_finite", 0)),
        min=entry.get("min"),
        max=entry.get("max"),
        mean=entry.get("mean"),
        std=entry.get("std"),
        bin_counts=np.asarray(bins, dtype=np.int64) if bins is not None else None,
    )
    binning = Binning.from_dict(entry["binning"]) if entry.get("binning") else None
    return FeatureProfile(summary, binning, entry.get("role", "feature"))


def infer_kind(series: pd.Series) -> Kind:
    """``numeric`` for numbers, ``categorical`` for text, booleans and categories."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "categorical"


def _chunks(data: pd.DataFrame | Iterable[pd.DataFrame], chunk_rows: int) -> Iterator[Any]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        for start in range(0, max(len(data), 1), chunk_rows):
            yield data.iloc[start : start + chunk_rows]
    else:
        yield from data


def build_profile(
    data: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    kinds: Mapping[str, Kind] | None = None,
    exclude: Iterable[str] = (),
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    bins: int = DEFAULT_BINS,
    seed: int = 0,
    source: Mapping[str, Any] | None = None,
    chunk_rows: int = 200_000,
) -> ReferenceProfile:
    """Summarise reference data (a DataFrame or its chunks) into a profile.

    Args:
        data: the training or validation data, with the model's input columns and,
            optionally, ``prediction``/``proba`` (the model's outputs on it).
        kinds: ``numeric``/``categorical`` per column where the dtype would mislead
            (integer-coded categories); the model signature's kinds belong here.
        exclude: columns to leave out (the target, ids); prediction-log bookkeeping
            columns (``request_id``, ``ts``, ...) are always left out.
        sample_size: numeric values kept per column; ``None`` keeps every value.
        bins: equal-frequency bins for PSI and Jensen–Shannon.
        seed: seeds the uniform sample, so one input always gives one profile.
        source: free-form provenance stored in the profile (path, data digest, ...).
        chunk_rows: rows reduced at a time.

    Returns:
        The profile.

    Raises:
        MonitorError: the data has no rows or no usable column.
    """
    if bins < 2:
        raise MonitorError(f"bins must be at least 2 (got {bins})")
    skip = set(LOG_COLUMNS) | set(exclude)
    kinds = dict(kinds or {})
    accumulators: dict[str, ColumnAccumulator] = {}
    rows = 0
    for chunk in _chunks(data, chunk_rows):
        if not accumulators:
            for name in chunk.columns:
                if str(name) in skip:
                    continue
                kind = kinds.get(str(name)) or infer_kind(chunk[name])
                accumulators[str(name)] = ColumnAccumulator(
                    str(name), kind, max_values=sample_size, seed=seed
                )
            if not accumulators:
                raise MonitorError(
                    "the reference data has no column to profile",
                    hint=f"it needs the model's input columns (bookkeeping columns "
                    f"{', '.join(LOG_COLUMNS)} and excluded ones are left out)",
                )
        rows += len(chunk)
        map_columns(lambda acc, c=chunk: acc.add(c[acc.name]), list(accumulators.values()))
    if rows == 0:
        raise MonitorError(
            "the reference data has no rows", hint="profile the training or validation data"
        )
    summaries = map_columns(lambda acc: acc.finish(), list(accumulators.values()))
    features = {}
    for summary in summaries:
        binning = None
        if summary.kind == "numeric":
            values = summary.values if summary.values is not None else np.empty(0)
            ends = run_ends(values)
            binning = Binning.from_sorted(values, bins, ends)
            summary = replace(summary, bin_counts=binning.count_sorted(values))
        role: Role = "prediction" if summary.name in PREDICTION_COLUMNS else "feature"
        feature = FeatureProfile(summary, binning, role)
        if summary.kind == "numeric":
            feature.__dict__["ends"] = ends  # prime the cached property: computed once
        features[summary.name] = feature
    return ReferenceProfile(features, rows, sample_size, bins, dict(source or {}))


def compute_reference_profile(
    data: pd.DataFrame | Iterable[pd.DataFrame], objects: ObjectStore, **options: Any
) -> Digest:
    """Profile reference data and store the profile; returns its digest.

    The hook for registration: store the returned digest in
    ``model_versions.reference_digest`` and ``mlcd monitor`` uses it as the reference.
    ``options`` are those of :func:`build_profile`.
    """
    return objects.put_bytes(build_profile(data, **options).to_bytes())


def load_profile(objects: ObjectStore, digest: Digest | str) -> ReferenceProfile:
    """Read a stored profile (verified against its digest).

    Raises:
        ObjectNotFound: the profile is not in the object store.
        MonitorError: the object is not a profile.
    """
    from mlcd.digest import Digest

    key = digest if isinstance(digest, Digest) else Digest.parse(str(digest))
    return ReferenceProfile.from_bytes(objects.get_bytes(key))


def profile_from_file(path: str | Path, **options: Any) -> ReferenceProfile:
    """Profile a CSV or Parquet file, read in chunks (``options`` as :func:`build_profile`)."""
    from mlcd.monitor.window import iter_file_chunks

    source = {"path": str(path), **options.pop("source", {})}
    return build_profile(iter_file_chunks(path), source=source, **options)
