"""Latency budgets that do not flip on a busy runner (issue 17).

The same model measured quietly and while four busy processes load this 2-core machine: the
budgets gates read (CPU time of the predicting thread, native pools pinned to one thread as
in ``mlcd serve``) stay within a small factor, so a budget set at a few times the quiet p99
passes under load, while the wall-clock p99 (reported next to it) is free to swing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlcd.evaluate.metrics import latency

pytestmark = pytest.mark.xdist_group("cpu_hog")  # alone on its worker: it loads the machine


@pytest.fixture(scope="module")
def model_and_rows() -> tuple[RandomForestClassifier, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 8)), columns=[f"f{i}" for i in range(8)])
    y = (X["f0"] + X["f1"] > 0).astype(int)
    return RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y), X


@contextmanager
def cpu_hog(processes: int = 4) -> Iterator[None]:
    """Busy processes that keep this 2-core machine's cores saturated."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_budgets_are_cpu_time_with_wall_time_beside(
    model_and_rows: tuple[RandomForestClassifier, pd.DataFrame],
) -> None:
    model, X = model_and_rows
    timing = latency(model, X, rows=100)
    assert set(timing) >= {"latency_p50_ms", "latency_p99_ms", "latency_p50_wall_ms",
                           "latency_p99_wall_ms", "throughput_rows_s"}  # fmt: skip
    assert 0 < timing["latency_p50_ms"] <= timing["latency_p99_ms"]


@pytest.mark.slow  # it loads both cores on purpose (make test-fast skips it)
def test_a_latency_budget_does_not_fail_under_a_cpu_hog(
    model_and_rows: tuple[RandomForestClassifier, pd.DataFrame],
) -> None:
    model, X = model_and_rows
    quiet = latency(model, X, rows=100)
    budget = 4 * quiet["latency_p99_ms"]  # what a team writes after one quiet run
    with cpu_hog():
        loaded = latency(model, X, rows=100)
    assert loaded["latency_p99_ms"] <= budget, (quiet, loaded)
