"""Evaluation: the paired bootstrap of a candidate against the champion on 100,000 rows.

mlcd draws resamples as count matrices and evaluates every metric on a whole chunk of them
with matrix products. The reference is the obvious implementation: a Python loop that
resamples row indices and calls scikit-learn's metric functions for both models (timed on
a few resamples and scaled to the same count, since the full loop takes minutes).

    .venv/bin/python benchmarks/bench_evaluate.py [--quick] [--rows 100000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report
from mlcd.evaluate.bootstrap import paired_bootstrap
from mlcd.evaluate.metrics import CLASSIFICATION, REGRESSION, Scored


def classification_pair(n: int) -> tuple[Scored, Scored]:
    """Two binary classifiers of slightly different quality on the same ``n`` rows."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    noise = rng.normal(0, 0.25, n)

    def model(strength: float) -> Scored:
        score = np.clip(0.35 + y * strength + noise + rng.normal(0, 0.05, n), 0, 1)
        proba = np.column_stack([1 - score, score])
        return Scored("classification", y, (score > 0.5).astype(int), proba, [0, 1])

    return model(0.30), model(0.28)


def regression_pair(n: int) -> tuple[Scored, Scored]:
    """Two regressors on the same ``n`` rows."""
    rng = np.random.default_rng(1)
    y = rng.normal(100, 20, n)
    return (
        Scored("regression", y, y + rng.normal(0, 5.0, n)),
        Scored("regression", y, y + rng.normal(0, 5.2, n)),
    )


def naive_loop(candidate: Scored, champion: Scored, resamples: int) -> None:
    """The reference: resample indices in Python, call scikit-learn for each metric."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    for _ in range(resamples):
        index = rng.integers(0, candidate.n, candidate.n)
        for scored in (candidate, champion):
            y, pred = scored.y[index], scored.pred[index]
            if scored.task == "classification":
                assert scored.proba is not None
                proba = scored.proba[index]
                skm.accuracy_score(y, pred)
                skm.precision_score(y, pred)
                skm.recall_score(y, pred)
                skm.f1_score(y, pred)
                skm.roc_auc_score(y, proba[:, 1])
                skm.log_loss(y, proba)
            else:
                skm.root_mean_squared_error(y, pred)
                skm.mean_absolute_error(y, pred)
                skm.r2_score(y, pred)
                skm.mean_absolute_percentage_error(y, pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows, resamples, reps = (
        (10_000, 200, 1) if args.quick else (args.rows, args.resamples, args.reps)
    )
    naive_resamples = 5 if args.quick else 20

    results: list[tuple[str, float, float]] = []
    cases: list[tuple[str, Any, tuple[str, ...]]] = [
        ("classification, 6 metrics", classification_pair, CLASSIFICATION),
        ("classification, roc_auc only", classification_pair, ("roc_auc",)),
        ("regression, 4 metrics", regression_pair, REGRESSION),
    ]
    for label, make, metrics in cases:
        candidate, champion = make(rows)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            deltas = paired_bootstrap(candidate, champion, metrics, resamples=resamples)
            times.append(time.perf_counter() - start)
        assert set(deltas) == set(metrics)
        ours = median(times)
        naive = 0.0
        if len(metrics) > 1:
            start = time.perf_counter()
            naive_loop(candidate, champion, naive_resamples)
            naive = (time.perf_counter() - start) / naive_resamples * resamples
        report(
            "evaluate.bootstrap",
            case=label,
            rows=rows,
            resamples=resamples,
            mlcd_s=round(ours, 3),
            naive_loop_s=round(naive, 1) if naive else None,
            reps=reps,
        )
        results.append((label, ours, naive))

    print(f"\n{rows:,} rows, {resamples:,} paired resamples (both models scored per resample)\n")
    print("| case | mlcd (s) | Python loop + scikit-learn (s, scaled) | speed-up |")
    print("|---|---|---|---|")
    for label, ours, naive in results:
        naive_text = f"{naive:.0f}" if naive else "–"
        ratio = f"{naive / ours:.0f}x" if naive else "–"
        print(f"| {label} | {ours:.2f} | {naive_text} | {ratio} |")


if __name__ == "__main__":
    main()
