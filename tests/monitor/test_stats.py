"""The statistics equal scipy's on the same input, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from mlcd import stats as s

SIZES = [(5, 7), (300, 200), (1000, 1000), (12_000, 9_000), (20_000, 50_000)]


def _samples(n: int, m: int, seed: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    b = rng.normal(0.05, 1.1, m)
    if decimals is not None:  # ties inside and across samples
        a, b = np.round(a, decimals), np.round(b, decimals)
    return a, b


@pytest.mark.parametrize(("n", "m"), SIZES)
@pytest.mark.parametrize("decimals", [None, 1])
def test_ks_statistic_and_p_value_equal_scipy(n: int, m: int, decimals: int | None) -> None:
    a, b = _samples(n, m, seed=n + m, decimals=decimals)
    ours = s.ks_2samp_sorted(np.sort(a), np.sort(b))
    theirs = stats.ks_2samp(a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.pvalue, abs=1e-9)


@pytest.mark.parametrize(("n", "m"), SIZES)
@pytest.mark.parametrize("decimals", [None, 0, 2])
def test_wasserstein_equals_scipy(n: int, m: int, decimals: int | None) -> None:
    a, b = _samples(n, m, seed=3 * n + m, decimals=decimals)
    ks, distance_ = s.compare_sorted(np.sort(a), np.sort(b))
    assert distance_ == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-9)
    assert s.wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(distance_, abs=1e-12)
    assert ks.statistic == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-9)


def test_identical_and_disjoint_samples_reach_the_extremes() -> None:
    a = np.sort(np.random.default_rng(1).standard_normal(20_000))
    same = s.ks_2samp_sorted(a, a)
    assert same.statistic == 0.0 and same.p_value == pytest.approx(1.0)
    far = s.ks_2samp_sorted(a, a + 100.0)
    assert far.statistic == 1.0 and far.p_value < 1e-12
    assert s.wasserstein_sorted(a, a + 100.0) == pytest.approx(100.0, abs=1e-9)


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        ([10, 20, 0, 5], [12, 15, 3, 0]),  # a category on one side only
        ([30, 20], [15, 25]),  # one degree of freedom: Yates' correction
        ([500, 300, 200, 1], [480, 330, 190, 9]),
        ([7], [9]),  # one category: no degree of freedom
    ],
)
def test_chi_square_equals_scipy_chi2_contingency(reference: list[int], current: list[int]) -> None:
    ours = s.chi2_contingency_counts(np.array(reference), np.array(current))
    table = np.array([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    theirs = stats.chi2_contingency(table)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.pvalue, abs=1e-9)
    assert ours.dof == theirs.dof


def test_categories_absent_from_both_samples_are_ignored() -> None:
    with_empty = s.chi2_contingency_counts(np.array([10, 0, 5]), np.array([8, 0, 9]))
    without = s.chi2_contingency_counts(np.array([10, 5]), np.array([8, 9]))
    assert with_empty == without


@pytest.mark.parametrize(
    ("p", "q"), [([1, 2, 3], [3, 2, 1]), ([10, 0, 5, 5], [0, 10, 5, 5]), ([4, 4], [4, 4])]
)
def test_jensen_shannon_equals_scipy(p: list[int], q: list[int]) -> None:
    assert s.jensenshannon(np.array(p), np.array(q)) == pytest.approx(
        distance.jensenshannon(p, q), abs=1e-9
    )


def test_psi_follows_its_documented_formula() -> None:
    ref, cur = np.array([50, 30, 20]), np.array([30, 30, 40])
    p, q = ref / ref.sum(), cur / cur.sum()
    assert s.psi(ref, cur) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), abs=1e-12)
    # an empty bin counts as 0.0001 of its sample instead of making PSI infinite
    empty = s.psi(np.array([50, 50, 0]), np.array([40, 40, 20]))
    p, q = np.array([0.5, 0.5, 1e-4]), np.array([0.4, 0.4, 0.2])
    assert empty == pytest.approx(float(np.sum((q - p) * np.log(q / p))), abs=1e-12)
    assert s.psi(ref, ref) == 0.0


def test_empty_samples_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        s.ks_2samp_sorted(np.empty(0), np.ones(3))
    with pytest.raises(ValueError, match="at least one counted value"):
        s.chi2_contingency_counts(np.array([0, 0]), np.array([1, 2]))
