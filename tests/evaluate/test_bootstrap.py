"""The paired bootstrap: intervals that mean what they say, reproducibly."""

from __future__ import annotations

import numpy as np

from mlcd.evaluate.bootstrap import paired_bootstrap
from mlcd.evaluate.metrics import CLASSIFICATION, REGRESSION, Scored


def _pair(n: int, gap: float, seed: int = 0) -> tuple[Scored, Scored]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    noise = rng.normal(0, 0.25, n)
    strong = np.clip(0.35 + y * 0.3 + noise, 0, 1)
    weak = np.clip(0.35 + y * (0.3 - gap) + noise + rng.normal(0, 0.05, n), 0, 1)

    def scored(score: np.ndarray) -> Scored:
        proba = np.column_stack([1 - score, score])
        return Scored("classification", y, (score > 0.5).astype(int), proba, [0, 1])

    return scored(strong), scored(weak)


def test_identical_models_have_zero_delta_and_zero_width() -> None:
    model, _ = _pair(3000, 0.1)

    deltas = paired_bootstrap(model, model, CLASSIFICATION, resamples=200)

    for delta in deltas.values():
        assert (delta.delta, delta.low, delta.high) == (0.0, 0.0, 0.0)
        assert not delta.better_at(0.95)


def test_clearly_better_candidate_has_an_interval_above_zero() -> None:
    better, worse = _pair(5000, 0.15)

    deltas = paired_bootstrap(better, worse, CLASSIFICATION, resamples=500)

    auc = deltas["roc_auc"]
    assert auc.delta > 0 and auc.low > 0 and auc.high > auc.low
    assert auc.p_better == 1.0
    assert auc.better_at(0.95)
    loss = deltas["log_loss"]  # lower is better: the delta is negative and still "better"
    assert loss.high < 0 and loss.better_at(0.95)
    reverse = paired_bootstrap(worse, better, ["roc_auc"], resamples=500)["roc_auc"]
    assert reverse.high < 0 and not reverse.better_at(0.95)


def test_equally_good_models_are_not_significantly_different() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)

    def model() -> Scored:
        score = np.clip(0.35 + y * 0.3 + rng.normal(0, 0.25, y.size), 0, 1)
        proba = np.column_stack([1 - score, score])
        return Scored("classification", y, (score > 0.5).astype(int), proba, [0, 1])

    a, b = model(), model()

    delta = paired_bootstrap(a, b, ["roc_auc"], resamples=500)["roc_auc"]

    assert delta.low < 0 < delta.high
    assert not delta.better_at(0.95)


def test_results_are_reproducible_with_a_seed_and_vary_without() -> None:
    a, b = _pair(2000, 0.05)

    one = paired_bootstrap(a, b, ["f1"], resamples=300, seed=11)["f1"]
    two = paired_bootstrap(a, b, ["f1"], resamples=300, seed=11)["f1"]
    three = paired_bootstrap(a, b, ["f1"], resamples=300, seed=12)["f1"]

    assert (one.low, one.high) == (two.low, two.high)
    assert (one.low, one.high) != (three.low, three.high)


def test_interval_covers_the_spread_of_explicit_resampling() -> None:
    # The vectorised result agrees with a plain loop over resampled indices.
    a, b = _pair(1500, 0.05, seed=9)
    rng = np.random.default_rng(0)
    loop = []
    for _ in range(400):
        index = rng.integers(0, a.n, a.n)
        loop.append(a.correct[index].mean() - b.correct[index].mean())
    low, high = np.quantile(loop, [0.025, 0.975])

    delta = paired_bootstrap(a, b, ["accuracy"], resamples=400)["accuracy"]

    width = high - low
    assert abs(delta.low - low) < 0.25 * width
    assert abs(delta.high - high) < 0.25 * width


def test_regression_deltas_and_chunking_over_many_rows() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(0, 1, 20_000)
    good = Scored("regression", y, y + rng.normal(0, 0.5, y.size))
    bad = Scored("regression", y, y + rng.normal(0, 0.7, y.size))

    deltas = paired_bootstrap(good, bad, REGRESSION, resamples=1200)

    assert deltas["rmse"].high < 0 and deltas["rmse"].better_at(0.99)
    assert deltas["r2"].low > 0
    assert deltas["rmse"].samples.size == 1200
