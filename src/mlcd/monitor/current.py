"""The current window reduced, chunk by chunk, against the reference profile."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcd.monitor.profile import LOG_COLUMNS, PREDICTION_COLUMNS, ReferenceProfile
from mlcd.monitor.summary import ColumnAccumulator, ColumnSummary, map_columns

if TYPE_CHECKING:
    import pandas as pd

#: Distinct rejection messages kept with their counts (the rest are summed as "other").
_MAX_ERRORS = 20


@dataclass(frozen=True)
class WindowSummary:
    """Every column of the current window, plus the rows the server rejected."""

    rows: int
    rejected: int
    columns: dict[str, ColumnSummary]
    rejection_errors: dict[str, int] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    versions: dict[str, int] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Rows the server answered (the ones drift and quality look at)."""
        return self.rows - self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "versions": self.versions,
            "missing_columns": self.missing_columns,
            "extra_columns": self.extra_columns,
        }


def summarise_window(
    profile: ReferenceProfile,
    chunks: Iterable[pd.DataFrame],
    *,
    max_values: int | None = 1_000_000,
    seed: int = 0,
    on_chunk: Callable[[pd.DataFrame], None] | None = None,
    ignore: Iterable[str] = (),
) -> WindowSummary:
    """Reduce the window's chunks into a :class:`WindowSummary`.

    Args:
        profile: the reference the columns are compared with (binning, range, categories).
        chunks: DataFrames of rows (prediction-log rows or rows of a file).
        max_values: numeric values kept per column (a uniform sample above).
        seed: seeds the sample.
        on_chunk: also called with each chunk of accepted rows (performance joins use it).
        ignore: columns that are neither features nor unexpected (the label column).
    """
    accumulators: dict[str, ColumnAccumulator] = {
        name: feature.accumulator(max_values, seed=seed + index)
        for index, (name, feature) in enumerate(profile.features.items())
    }
    used: set[str] = set()
    seen: set[str] = set()
    rows = rejected = 0
    errors: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    first, last = math.inf, -math.inf
    for chunk in chunks:
        rows += len(chunk)
        seen.update(str(c) for c in chunk.columns)
        accepted = chunk
        if "status" in chunk.columns:
            bad = (chunk["status"] == "rejected").fillna(False).to_numpy(dtype=bool)
            if bad.any():
                rejected += int(bad.sum())
                if "error" in chunk.columns:
                    errors.update(chunk.loc[bad, "error"].fillna("(no message)").astype(str))
                accepted = chunk[~bad]
        if "ts" in chunk.columns and len(chunk):
            ts = chunk["ts"].to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isfinite(ts).any():
                first = min(first, float(np.nanmin(ts)))
                last = max(last, float(np.nanmax(ts)))
        if "version" in chunk.columns:
            counts = chunk["version"].value_counts(dropna=True, sort=False)
            versions.update({str(v): int(n) for v, n in counts.items()})
        if on_chunk is not None and len(accepted):
            on_chunk(accepted)
        present = [acc for name, acc in accumulators.items() if name in accepted.columns]
        used.update(acc.name for acc in present)
        if len(accepted):
            map_columns(lambda acc, frame=accepted: acc.add(frame[acc.name]), present)
    summaries = map_columns(
        lambda acc: acc.finish(), [acc for name, acc in accumulators.items() if name in used]
    )
    if len(errors) > _MAX_ERRORS:
        top = dict(errors.most_common(_MAX_ERRORS - 1))
        top["(other messages)"] = sum(errors.values()) - sum(top.values())
        errors = Counter(top)
    skip = set(LOG_COLUMNS) | set(PREDICTION_COLUMNS) | set(ignore)
    return WindowSummary(
        rows=rows,
        rejected=rejected,
        columns={s.name: s for s in summaries},
        rejection_errors=dict(errors.most_common()),
        first_at=first if math.isfinite(first) else None,
        last_at=last if math.isfinite(last) else None,
        versions=dict(versions),
        # Only inputs: a window without the model's outputs is tested for less, not broken.
        missing_columns=[n for n in profile.inputs if n not in seen] if rows else [],
        extra_columns=sorted(c for c in seen if c not in profile.features and c not in skip),
    )
