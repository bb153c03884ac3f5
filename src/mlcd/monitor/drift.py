"""Drift per feature and per prediction column, and the dataset-level verdict.

Methods: numeric columns — Kolmogorov–Smirnov (``ks``, p-value), Wasserstein distance
normalised by the reference standard deviation (``wasserstein``), ``psi`` and Jensen–Shannon
distance (``jensenshannon``); categorical columns — chi-square test of homogeneity
(``chisquare``, p-value), ``psi`` and ``jensenshannon``. Every applicable statistic is
computed (they are cheap once samples are sorted); one method per column decides.

The default method follows Evidently's rule: with at most 1,000 reference values a
statistical test (KS for numeric, chi-square for categorical and for numeric columns with at
most 5 distinct values), above that a distance (normalised Wasserstein for numeric,
Jensen–Shannon for categorical and few-valued numeric columns), because on large samples
every test rejects for differences too small to matter. A p-value method flags drift when
``p < threshold``; a distance flags it when ``score >= threshold``. The rule looks at the
smaller side: a window of at most 1,000 values gets a test even against a large reference
(a distance measured on a few rows is mostly sampling noise).

A column with fewer values in the window than the method needs (``min_rows``) is "not
enough data", never drift: 30 for a test (the 5% KS critical distance is 1.36/sqrt(n), a
quarter of the distribution at 30 rows: below that a test can see almost nothing), and
(2 / threshold)^2 for a distance (400 at 0.1: the distance that sampling noise alone gives,
about 0.9/sqrt(n) standard deviations for Wasserstein, stays well under the threshold).
``monitor.min_rows`` overrides both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcd import stats
from mlcd.errors import ConfigError
from mlcd.monitor.summary import OTHER, ColumnSummary, map_columns

if TYPE_CHECKING:
    from mlcd.config import Drift as DriftConfig
    from mlcd.monitor.profile import FeatureProfile, ReferenceProfile

METHODS = ("ks", "wasserstein", "psi", "jensenshannon", "chisquare")
NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
P_VALUE_METHODS = frozenset({"ks", "chisquare"})
DEFAULT_THRESHOLDS = {
    "ks": 0.05,
    "chisquare": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "jensenshannon": 0.1,
}
#: Up to this many reference values a column gets a statistical test by default.
SMALL_SAMPLE = 1000
#: A numeric column with at most this many distinct values is tested like a categorical one.
FEW_VALUES = 5
#: Wasserstein is divided by max(reference std, this), so a constant column cannot divide by 0.
MIN_NORM = 0.001
DEFAULT_SHARE = 0.5
#: Fewest window values a statistical test is run on (see the module docstring).
TEST_MIN_ROWS = 30
NOT_ENOUGH = "not enough data"
#: Numeric values kept per column of a current window (a uniform sample above).
DEFAULT_MAX_VALUES = 1_000_000
_PLOT_BINS = 30
_PLOT_CATEGORIES = 20


@dataclass(frozen=True)
class DriftSettings:
    """Methods and thresholds, from ``monitor.drift`` in mlcd.yaml."""

    numeric_method: str | None = None
    categorical_method: str | None = None
    threshold: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    share_threshold: float = DEFAULT_SHARE
    features: Mapping[str, tuple[str | None, float | None]] = field(default_factory=dict)
    max_values: int | None = DEFAULT_MAX_VALUES
    #: ``monitor.min_rows``: window values a column needs before drift is judged (None: by method)
    min_rows: int | None = None
    #: ``bh``: Benjamini-Hochberg across the columns judged by a p-value test (``none``: each alone)
    correction: str = "none"

    @classmethod
    def from_config(cls, drift: DriftConfig, min_rows: int | None = None) -> DriftSettings:
        """Settings from the ``monitor.drift`` section (and ``monitor.min_rows``)."""
        return cls(
            numeric_method=drift.numeric_method,
            categorical_method=drift.categorical_method,
            threshold=drift.threshold,
            thresholds=dict(getattr(drift, "thresholds", {}) or {}),
            share_threshold=drift.share_threshold,
            features={k: (v.method, v.threshold) for k, v in drift.features.items()},
            max_values=getattr(drift, "max_values", DEFAULT_MAX_VALUES),
            min_rows=min_rows,
            correction=getattr(drift, "correction", "none"),
        )

    def needs(self, method: str, threshold: float) -> int:
        """The fewest window values ``method`` is judged on (``min_rows``, else by method)."""
        if self.min_rows is not None:
            return self.min_rows
        if method in P_VALUE_METHODS:
            return TEST_MIN_ROWS
        return max(TEST_MIN_ROWS, math.ceil((2.0 / max(threshold, 1e-6)) ** 2))

    def choose(self, feature: FeatureProfile, current: int | None = None) -> tuple[str, str]:
        """The method for a column and why (configured, or the default rule on the smaller of
        the reference and the ``current`` window).

        Raises:
            ConfigError: a numeric-only method configured for a categorical column.
        """
        configured, _ = self.features.get(feature.name, (None, None))
        why = f"monitor.drift.features.{feature.name}.method"
        if configured is None:
            configured = (
                self.numeric_method if feature.kind == "numeric" else self.categorical_method
            )
            why = f"monitor.drift.{feature.kind}_method"
        if configured is not None:
            if feature.kind == "categorical" and configured in NUMERIC_ONLY:
                raise ConfigError(
                    f"{why}: '{configured}' needs a numeric column, but '{feature.name}' "
                    "is categorical",
                    hint="use chisquare, psi or jensenshannon for categorical columns",
                )
            return configured, f"set by {why}"
        size = feature.summary.present
        side = "reference"
        if current is not None and current < size:
            size, side = current, "window"
        few = feature.kind == "categorical" or feature.distinct <= FEW_VALUES
        kind = "categorical" if feature.kind == "categorical" else "numeric"
        if feature.kind == "numeric" and few:
            kind = f"numeric with {feature.distinct} distinct values"
        if size <= SMALL_SAMPLE:
            method = "chisquare" if few else "ks"
            return method, f"default: {kind}, {size} {side} values (≤ {SMALL_SAMPLE})"
        method = "jensenshannon" if few else "wasserstein"
        return method, f"default: {kind}, {size} values on each side (> {SMALL_SAMPLE})"

    def threshold_for(self, name: str, method: str) -> float:
        """Per column > per method > global > the method's default."""
        _, own = self.features.get(name, (None, None))
        if own is not None:
            return own
        if method in self.thresholds:
            return float(self.thresholds[method])
        if self.threshold is not None:
            return self.threshold
        return DEFAULT_THRESHOLDS[method]


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one column: the deciding method and every statistic computed."""

    name: str
    kind: str
    role: str
    method: str
    threshold: float
    reason: str
    score: float | None = None
    drifted: bool | None = None
    status: str = "ok"  # ok | drift | no data | not enough data
    n_reference: int = 0
    n_current: int = 0
    statistics: dict[str, Any] = field(default_factory=dict)
    distribution: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "method": self.method,
            "threshold": self.threshold,
            "score": self.score,
            "drifted": self.drifted,
            "status": self.status,
            "reason": self.reason,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "statistics": self.statistics,
            "distribution": self.distribution,
        }


@dataclass(frozen=True)
class DriftReport:
    """Drift of every column and the dataset-level verdict."""

    features: list[FeatureDrift]
    predictions: list[FeatureDrift]
    share_threshold: float

    @property
    def tested(self) -> list[FeatureDrift]:
        """Input columns that had data on both sides."""
        return [f for f in self.features if f.drifted is not None]

    @property
    def not_enough(self) -> list[FeatureDrift]:
        """Columns (inputs and predictions) with too few window values to be judged."""
        return [f for f in [*self.features, *self.predictions] if f.status == NOT_ENOUGH]

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Input columns flagged as drifted."""
        return [f for f in self.features if f.drifted]

    @property
    def share(self) -> float:
        """Drifted share of the tested input columns (0 when none could be tested)."""
        tested = self.tested
        return len(self.drifted) / len(tested) if tested else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Whether the drifted share reaches ``share_threshold``."""
        return bool(self.tested) and self.share >= self.share_threshold

    @property
    def prediction_drift(self) -> bool:
        """Whether any prediction column drifted."""
        return any(p.drifted for p in self.predictions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "share_threshold": self.share_threshold,
            "dataset_drift": self.dataset_drift,
            "prediction_drift": self.prediction_drift,
            "tested": len(self.tested),
            "drifted": [f.name for f in self.drifted],
            "features": [f.to_dict() for f in self.features],
            "predictions": [p.to_dict() for p in self.predictions],
        }


def _verdict(method: str, threshold: float, statistics: dict[str, Any]) -> tuple[float, bool]:
    value = statistics[method]
    if method in P_VALUE_METHODS:
        p = float(value["p_value"])
        return p, p < threshold
    return float(value), float(value) >= threshold


def _numeric_statistics(ref: FeatureProfile, cur: ColumnSummary, method: str) -> dict[str, Any]:
    a = ref.values
    b = cur.values if cur.values is not None else np.empty(0)
    # The KS p-value only when KS decides: in the far tail scipy needs up to a second for it.
    ks, distance = stats.compare_sorted(a, b, ref.ends, p_value=method == "ks")
    norm = max(float(ref.summary.std or 0.0), MIN_NORM)
    out: dict[str, Any] = {
        "ks": {"statistic": ks.statistic, "p_value": ks.p_value},
        "wasserstein": distance / norm,
        "wasserstein_raw": distance,
    }
    ref_bins = ref.summary.bin_counts
    cur_bins = cur.bin_counts
    if ref_bins is not None and cur_bins is not None:
        chi = stats.chi2_contingency_counts(ref_bins, cur_bins)
        out["psi"] = stats.psi(ref_bins, cur_bins)
        out["jensenshannon"] = stats.jensenshannon(ref_bins, cur_bins)
        out["chisquare"] = {"statistic": chi.statistic, "p_value": chi.p_value, "dof": chi.dof}
    return out


def category_vectors(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both count dicts over the union of their categories (reference order first)."""
    keys = sorted(reference, key=lambda k: (-reference[k], k))
    keys += sorted(k for k in current if k not in reference)
    ref = np.array([reference.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.int64)
    return keys, ref, cur


def _categorical_statistics(ref: FeatureProfile, cur: ColumnSummary) -> dict[str, Any]:
    _, a, b = category_vectors(ref.summary.categories, cur.categories)
    chi = stats.chi2_contingency_counts(a, b)
    return {
        "chisquare": {"statistic": chi.statistic, "p_value": chi.p_value, "dof": chi.dof},
        "psi": stats.psi(a, b),
        "jensenshannon": stats.jensenshannon(a, b),
    }


def _distribution(ref: FeatureProfile, cur: ColumnSummary) -> dict[str, Any]:
    """Shares per bin on both sides, for plots: equal-width numeric bins or top categories."""
    if ref.kind == "categorical":
        keys, a, b = category_vectors(ref.summary.categories, cur.categories)
        if len(keys) > _PLOT_CATEGORIES:
            head = _PLOT_CATEGORIES - 1
            keys = [*keys[:head], OTHER]
            a = np.append(a[:head], a[head:].sum())
            b = np.append(b[:head], b[head:].sum())
        return {
            "labels": keys,
            "reference": stats.proportions(a).tolist(),
            "current": stats.proportions(b).tolist(),
        }
    x = ref.values
    y = cur.values if cur.values is not None else np.empty(0)
    both = [v for v in (x, y) if v.size]
    if not both:
        return {}
    low = min(float(v[0]) for v in both)
    high = max(float(v[-1]) for v in both)
    edges = np.linspace(low, high if high > low else low + 1.0, _PLOT_BINS + 1)

    def shares(values: np.ndarray) -> list[float]:
        cuts = np.searchsorted(values, edges[1:-1], side="right")
        counts = np.diff(np.concatenate(([0], cuts, [values.size])))
        return stats.proportions(counts).tolist()

    return {"edges": edges.tolist(), "reference": shares(x), "current": shares(y)}


def compare_feature(
    ref: FeatureProfile, cur: ColumnSummary, settings: DriftSettings
) -> FeatureDrift:
    """Drift of one column between its reference profile and a current summary."""
    n_ref = ref.summary.present
    n_cur = cur.present
    method, reason = settings.choose(ref, n_cur or None)
    threshold = settings.threshold_for(ref.name, method)
    base: dict[str, Any] = {
        "name": ref.name,
        "kind": ref.kind,
        "role": ref.role,
        "method": method,
        "threshold": threshold,
        "reason": reason,
        "n_reference": n_ref,
        "n_current": n_cur,
    }
    if n_ref == 0 or n_cur == 0:
        side = "reference" if n_ref == 0 else "current window"
        return FeatureDrift(**{**base, "reason": f"no values in the {side}"}, status="no data")
    needed = settings.needs(method, threshold)
    if n_cur < needed:
        why = f"{n_cur} values in the window; {method} needs at least {needed} (monitor.min_rows)"
        return FeatureDrift(**{**base, "reason": why}, status=NOT_ENOUGH)
    if ref.kind == "numeric":
        statistics = _numeric_statistics(ref, cur, method)
    else:
        statistics = _categorical_statistics(ref, cur)
    if method not in statistics:
        raise ConfigError(f"drift method '{method}' cannot be computed for '{ref.name}'")
    score, drifted = _verdict(method, threshold, statistics)
    return FeatureDrift(
        **base,
        score=score,
        drifted=drifted,
        status="drift" if drifted else "ok",
        statistics=statistics,
        distribution=_distribution(ref, cur),
    )


def detect_drift(
    profile: ReferenceProfile, current: Mapping[str, ColumnSummary], settings: DriftSettings
) -> DriftReport:
    """Drift of every profiled column present in ``current``, in parallel over columns."""
    names = [n for n in profile.features if n in current]
    results = map_columns(
        lambda name: compare_feature(profile.features[name], current[name], settings), names
    )
    if settings.correction == "bh":
        results = benjamini_hochberg(list(results))
    return DriftReport(
        features=[r for r in results if r.role == "feature"],
        predictions=[r for r in results if r.role == "prediction"],
        share_threshold=settings.share_threshold,
    )


def benjamini_hochberg(results: list[FeatureDrift]) -> list[FeatureDrift]:
    """Judge the p-value tests of ``results`` on Benjamini-Hochberg q-values, not raw p-values.

    Testing 200 healthy columns at p < 0.05 flags about 10 by chance; the q-value keeps the
    expected share of false flags among the flagged ones under each column's threshold. Columns
    judged by a distance, or not judged (no data, too few values), are left as they are. The
    q-value is added to each tested column's statistics.
    """
    tested = [
        i for i, r in enumerate(results)
        if r.method in P_VALUE_METHODS and r.score is not None and r.status in ("ok", "drift")
    ]  # fmt: skip
    order = sorted(tested, key=lambda i: float(results[i].score or 0.0))
    m = len(order)
    adjusted: dict[int, float] = {}
    running = 1.0
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        running = min(running, float(results[index].score or 0.0) * m / rank)
        adjusted[index] = running
    out = list(results)
    for index, q in adjusted.items():
        r = results[index]
        drifted = q < r.threshold
        out[index] = replace(
            r,
            drifted=drifted,
            status="drift" if drifted else "ok",
            statistics={**r.statistics, "q_value": q},
        )
    return out
