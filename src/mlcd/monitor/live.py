"""Live gauges for the model server: drift and quality over a rolling window of recent rows.

The server feeds every answered batch to :meth:`LiveMonitor.update` and reads
:meth:`LiveMonitor.snapshot` when ``/metrics`` is scraped. The window is the last
``window_rows`` rows, kept in fixed-size ring buffers (memory is fixed, an update is a
copy into the ring), and a snapshot runs the same per-column comparison as
``mlcd monitor``, so the live gauges and the reports agree.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcd.monitor.drift import DriftReport, DriftSettings, compare_feature
from mlcd.monitor.summary import ColumnSummary, as_categories, as_numbers

if TYPE_CHECKING:
    import pandas as pd

    from mlcd.monitor.profile import FeatureProfile, ReferenceProfile

_MISSING = -1
_UNSEEN = -2
_INVALID = -3
UNSEEN = "__unseen__"


@dataclass(frozen=True)
class LiveSnapshot:
    """The gauges of the rolling window at one moment."""

    rows: int
    drift_share: float
    drifted: list[str]
    missing_share: float
    out_of_range_share: float
    rejected_share: float
    scores: dict[str, float | None] = field(default_factory=dict)
    prediction_drift: bool = False
    ready: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Ring:
    """The last ``size`` values of one column."""

    def __init__(self, feature: FeatureProfile, size: int) -> None:
        self.feature = feature
        self.numeric = feature.kind == "numeric"
        self.categories = sorted(feature.known) if not self.numeric else []
        self._codes = {c: i for i, c in enumerate(self.categories)}
        self.data = np.full(size, np.nan) if self.numeric else np.full(size, _MISSING, np.int64)
        self.invalid = np.zeros(size, dtype=bool)

    def encode(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        if self.numeric:
            values, _ = as_numbers(series)
            raw_missing = series.isna().to_numpy()
            return values, np.isnan(values) & ~raw_missing
        texts, _ = as_categories(series)
        codes = np.full(len(series), _MISSING, dtype=np.int64)
        positions = series.index.get_indexer(texts.index)
        codes[positions] = [self._codes.get(t, _UNSEEN) for t in texts.tolist()]
        invalid = np.zeros(len(series), dtype=bool)
        present = series.notna().to_numpy()
        invalid[present] = True
        invalid[positions] = False
        codes[invalid] = _INVALID
        return codes, invalid

    def summary(self, data: np.ndarray, flags: np.ndarray) -> ColumnSummary:
        """Summarise a copy of the ring's valid slots."""
        filled = int(data.size)
        invalid = int(flags.sum())
        ref = self.feature.summary
        if self.numeric:
            nan = np.isnan(data)
            finite = np.sort(data[np.isfinite(data)])
            binning = self.feature.binning
            return ColumnSummary(
                self.feature.name,
                "numeric",
                rows=filled,
                missing=int(nan.sum()) - invalid,
                invalid=invalid,
                values=finite,
                count=int(finite.size),
                non_finite=int((~nan & ~np.isfinite(data)).sum()),
                bin_counts=binning.count_sorted(finite) if binning is not None else None,
                below=int(np.searchsorted(finite, ref.min)) if ref.min is not None else 0,
                above=int(finite.size - np.searchsorted(finite, ref.max, "right"))
                if ref.max is not None
                else 0,
            )
        counts = np.bincount(data[data >= 0], minlength=len(self.categories))
        categories = {c: int(n) for c, n in zip(self.categories, counts, strict=True) if n}
        unseen = int((data == _UNSEEN).sum())
        if unseen:
            categories[UNSEEN] = unseen
        return ColumnSummary(
            self.feature.name,
            "categorical",
            rows=filled,
            missing=int((data == _MISSING).sum()),
            invalid=invalid,
            categories=categories,
            unseen=unseen,
        )


class LiveMonitor:
    """Rolling-window drift share, missing share and out-of-range share for a server.

    Thread-safe: request handlers call :meth:`update`, the metrics endpoint calls
    :meth:`snapshot`.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        settings: DriftSettings | None = None,
        window_rows: int = 10_000,
        min_rows: int = 100,
    ) -> None:
        """Watch the columns of ``profile`` over the last ``window_rows`` rows.

        Args:
            profile: the model version's reference profile.
            settings: drift methods and thresholds (``DriftSettings.from_config``).
            window_rows: rows in the rolling window.
            min_rows: below this many rows a snapshot reports ``ready=False``.
        """
        if window_rows <= 0:
            raise ValueError("window_rows must be positive")
        self.profile = profile
        self.settings = settings or DriftSettings()
        self.size = window_rows
        self.min_rows = min_rows
        self._rings = {name: _Ring(f, window_rows) for name, f in profile.features.items()}
        self._rejected = np.zeros(window_rows, dtype=bool)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()

    def update(
        self, rows: pd.DataFrame | Sequence[Mapping[str, Any]], rejected: bool = False
    ) -> None:
        """Add a batch of rows (a DataFrame or a list of row dicts) to the window.

        Rows of a rejected request are passed with ``rejected=True``: they count towards the
        rejected share and not towards drift or missing values.
        """
        import pandas as pd

        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        frame = frame.reset_index(drop=True).iloc[-self.size :]
        n = len(frame)
        if n == 0:
            return
        encoded: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        for name, ring in self._rings.items():
            if rejected or name not in frame.columns:
                encoded[name] = None
            else:
                encoded[name] = ring.encode(frame[name])
        with self._lock:
            slots = (self._next + np.arange(n)) % self.size
            for name, ring in self._rings.items():
                values = encoded[name]
                if values is None:
                    ring.data[slots] = np.nan if ring.numeric else _MISSING
                    ring.invalid[slots] = False
                else:
                    ring.data[slots], ring.invalid[slots] = values
            self._rejected[slots] = rejected
            self._next = int((self._next + n) % self.size)
            self._filled = min(self.size, self._filled + n)

    def snapshot(self) -> LiveSnapshot:
        """The gauges now (drift uses the same methods and thresholds as reports)."""
        with self._lock:
            filled = self._filled
            rejected = int(self._rejected[:filled].sum())
            keep = ~self._rejected[:filled]
            copies = {
                name: (ring.data[:filled][keep], ring.invalid[:filled][keep])
                for name, ring in self._rings.items()
            }
        summaries = {name: self._rings[name].summary(*copies[name]) for name in copies}
        results = [
            compare_feature(self.profile.features[n], s, self.settings)
            for n, s in summaries.items()
        ]
        report = DriftReport(
            [r for r in results if r.role == "feature"],
            [r for r in results if r.role == "prediction"],
            self.settings.share_threshold,
        )
        inputs = [summaries[n] for n in self.profile.inputs]
        cells = sum(s.rows for s in inputs)
        missing = sum(s.missing + s.invalid for s in inputs)
        present = cells - missing
        out = sum(s.out_of_range + s.unseen for s in inputs)
        return LiveSnapshot(
            rows=filled,
            drift_share=report.share,
            drifted=[f.name for f in report.drifted],
            missing_share=missing / cells if cells else 0.0,
            out_of_range_share=out / present if present else 0.0,
            rejected_share=rejected / filled if filled else 0.0,
            scores={r.name: r.score for r in results},
            prediction_drift=report.prediction_drift,
            ready=filled - rejected >= self.min_rows,
        )
