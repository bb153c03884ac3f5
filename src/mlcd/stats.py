"""Two-sample statistics on pre-sorted arrays and count vectors, equal to scipy's.

Every function here gives the number scipy gives on the same input (tests hold them to
1e-9): ``ks_2samp`` and ``wasserstein_distance`` from ``scipy.stats``, ``chi2_contingency``
from ``scipy.stats.contingency`` and ``jensenshannon`` from ``scipy.spatial.distance``. They
are faster because the reference is sorted once (in its profile) and the current sample
once, so the empirical CDFs meet in one linear merge instead of scipy's re-sorting and
binary searches over the pooled sample.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: scipy's ``ks_2samp(method="auto")`` is exact up to this many values per sample.
KS_EXACT_MAX_N = 10_000
#: A PSI bin with no values counts as this share of its sample (keeps the log finite).
PSI_EPSILON = 1e-4

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class TestResult:
    """A statistic and, for hypothesis tests, its p-value."""

    statistic: float
    p_value: float | None = None
    dof: int | None = None


def run_ends(values: Floats) -> Ints:
    """For a sorted array, the exclusive end index of each run of equal values.

    ``values[ends - 1]`` are the unique values and ``ends`` are their right-continuous
    empirical-CDF counts (what ``searchsorted(values, unique, 'right')`` returns).
    """
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    change = np.flatnonzero(values[1:] != values[:-1])
    return np.append(change + 1, values.size).astype(np.int64)


@dataclass(frozen=True)
class _Points:
    """``F_a - F_b`` at every distinct pooled value, and the distance to the next one.

    Split in two sides (the reference's distinct values, then the current's that the
    reference lacks) to spare copies; ``sum(|diff| * width)`` is the area between the CDFs.
    """

    diff_a: Floats
    width_a: Floats
    diff_b: Floats
    width_b: Floats


def _cdf_points(a: Floats, b: Floats, ends_a: Ints | None = None) -> _Points:
    """Evaluate both CDFs at the distinct values of ``a`` and of ``b`` with one binary search.

    ``left[j]`` (how many reference values are below ``b[j]``) gives everything: a current
    value ``b[j] <= a[i]`` exactly when ``left[j] <= i``, so a running count of ``left``
    is the current CDF at every reference value, and ``left`` plus the length of a tied
    reference run is the reference CDF at every current value. No pooled sort is needed.
    """
    n, m = a.size, b.size
    ends_a = run_ends(a) if ends_a is None else ends_a
    ends_b = run_ends(b)
    left = np.searchsorted(a, b, side="left")
    # An infinite sentinel past the end: "the next value" of the largest one.
    a_next = np.append(a, np.inf)
    b_next = np.append(b, np.inf)
    tied = a_next[left] == b
    any_tied = bool(tied.any())
    if any_tied:
        run_end = np.repeat(ends_a, np.diff(np.concatenate(([0], ends_a))))
        right = np.where(tied, run_end[np.minimum(left, n - 1)], left)
    else:
        right = left
    at_or_below = np.cumsum(np.bincount(left, minlength=n + 1))
    # at the last value of each reference run (every value when there are no ties)
    if ends_a.size == n:
        b_at_a, value_a = at_or_below[:n], a
    else:
        b_at_a, value_a = at_or_below[ends_a - 1], a[ends_a - 1]
    width_a = np.minimum(a_next[ends_a], b_next[b_at_a])
    width_a -= value_a
    diff_a = ends_a / n
    diff_a -= b_at_a / m
    # at the last value of each current run, unless a reference run has the same value
    if ends_b.size == m and not any_tied:
        value_b, right_b, count_b = b, right, np.arange(1, m + 1)
    else:
        jb = ends_b - 1
        if any_tied:
            jb = jb[~tied[jb]]
        value_b, right_b, count_b = b[jb], right[jb], jb + 1
    width_b = np.minimum(b_next[count_b], a_next[right_b])
    width_b -= value_b
    diff_b = right_b / n
    diff_b -= count_b / m
    # Only the largest pooled value has no next one; both CDFs are 1 there.
    for width in (width_a, width_b):
        if width.size and width[-1] == np.inf:
            width[-1] = 0.0
    return _Points(diff_a, width_a, diff_b, width_b)


def _ks_pvalue(d: float, n_a: int, n_b: int) -> float:
    """Smirnov's asymptotic two-sided p-value, as scipy's ``ks_2samp(method="asymp")``."""
    from scipy import stats

    m, n = sorted([float(n_a), float(n_b)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def _ks_from(points: _Points) -> float:
    sides = [d for d in (points.diff_a, points.diff_b) if d.size]
    max_s = max(float(d.max()) for d in sides)
    min_s = float(np.clip(-min(float(d.min()) for d in sides), 0, 1))
    return min_s if min_s > max_s else max_s


def _ks_small(a: Floats, b: Floats) -> TestResult:
    from scipy import stats

    # Small samples: scipy's exact path is the reference and cheap enough to call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ks_2samp(a, b)
    return TestResult(float(result.statistic), float(result.pvalue))


def _check(a: Floats, b: Floats) -> None:
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")


def ks_2samp_sorted(a: Floats, b: Floats, ends_a: Ints | None = None) -> TestResult:
    """Two-sided two-sample Kolmogorov–Smirnov test, as ``scipy.stats.ks_2samp``.

    Args:
        a: the reference sample, sorted, finite.
        b: the current sample, sorted, finite.
        ends_a: ``run_ends(a)`` when already known (the profile keeps it).

    Returns:
        The statistic D and scipy's p-value (exact up to 10,000 values per sample,
        Smirnov's asymptotic distribution above).
    """
    _check(a, b)
    if max(a.size, b.size) <= KS_EXACT_MAX_N:
        return _ks_small(a, b)
    d = _ks_from(_cdf_points(a, b, ends_a))
    return TestResult(d, _ks_pvalue(d, a.size, b.size))


def wasserstein_sorted(a: Floats, b: Floats, ends_a: Ints | None = None) -> float:
    """First Wasserstein distance between two sorted samples, as scipy's ``wasserstein_distance``."""
    _check(a, b)
    return _wasserstein_from(_cdf_points(a, b, ends_a))


def _wasserstein_from(points: _Points) -> float:
    # Multiply and sum (pairwise summation), not np.dot/np.vecdot: measured 200x faster here,
    # and a BLAS dot may start threads of its own that fight the column threads.
    return float(
        (np.abs(points.diff_a) * points.width_a).sum()
        + (np.abs(points.diff_b) * points.width_b).sum()
    )


def compare_sorted(
    a: Floats, b: Floats, ends_a: Ints | None = None, p_value: bool = True
) -> tuple[TestResult, float]:
    """The KS test and the Wasserstein distance of two sorted samples from one CDF pass.

    ``p_value=False`` leaves the KS p-value out (None): far in the tail, scipy's Smirnov
    distribution takes up to a second per call on large samples, which is wasted when
    another method decides.
    """
    _check(a, b)
    points = _cdf_points(a, b, ends_a)
    d = _ks_from(points)
    if not p_value:
        ks = TestResult(d)
    elif max(a.size, b.size) <= KS_EXACT_MAX_N:
        ks = _ks_small(a, b)
    else:
        ks = TestResult(d, _ks_pvalue(d, a.size, b.size))
    return ks, _wasserstein_from(points)


def chi2_contingency_counts(reference: Ints, current: Ints, correction: bool = True) -> TestResult:
    """Chi-square test of homogeneity on two count vectors over the same categories.

    The same numbers as ``scipy.stats.chi2_contingency([reference, current])`` (with Yates'
    correction when there is one degree of freedom, as scipy does by default). Categories
    absent from both samples are dropped first, since scipy refuses a zero expected count.
    """
    from scipy import stats

    table = np.vstack([np.asarray(reference, dtype=np.float64), np.asarray(current, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] == 0 or (table.sum(axis=1) == 0).any():
        raise ValueError("both samples need at least one counted value")
    total = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    dof = table.shape[1] - 1
    if dof == 0:
        return TestResult(0.0, 1.0, 0)
    observed = table
    if dof == 1 and correction:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return TestResult(statistic, float(stats.chi2.sf(statistic, dof)), dof)


def proportions(counts: Ints | Floats) -> Floats:
    """Counts as shares of their total (all zeros when the total is zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi(reference: Ints | Floats, current: Ints | Floats, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two binned samples.

    ``sum((q - p) * ln(q / p))`` over the bins, with ``p`` the reference share and ``q`` the
    current share of each bin; an empty bin counts as ``epsilon`` so the log stays finite.
    """
    p = np.maximum(proportions(reference), epsilon)
    q = np.maximum(proportions(current), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def jensenshannon(reference: Ints | Floats, current: Ints | Floats) -> float:
    """Jensen–Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    from scipy.special import rel_entr

    p = proportions(reference)
    q = proportions(current)
    m = (p + q) / 2.0
    divergence = float(np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m)))
    return math.sqrt(max(divergence, 0.0) / 2.0)
