"""Latency budgets measured the way the model is served, with the measurement's own noise.

A budget gate (``latency_p99_ms <= 250``) must not flip because another job loads the CI
runner. So the models are timed:

* with their native thread pools (OpenMP, BLAS) limited as a ``mlcd serve`` worker runs them
  (``OMP_NUM_THREADS`` when set, else one thread: see :func:`serving_threads`);
* after a warm-up that is not counted;
* in several repetition blocks, the candidate and the champion alternating block by block
  (ABBA order) in the same process, so a load that comes and goes hits both alike and the
  per-block difference cancels it;
* in CPU time of the predicting thread (what the model costs; another process cannot
  inflate it much) with the wall time beside it.

The spread of the per-block values is the measurement's noise. A gate whose margin to its
threshold is smaller than that noise is *inconclusive* (see ``mlcd.evaluate.gate``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Latency metrics: (percentile, clock).
LATENCY_METRICS: dict[str, tuple[int, str]] = {
    "latency_p50_ms": (50, "cpu"),
    "latency_p99_ms": (99, "cpu"),
    "latency_p50_wall_ms": (50, "wall"),
    "latency_p99_wall_ms": (99, "wall"),
}
WARM_UP = 5


def serving_threads() -> int:
    """Threads per native pool of a ``mlcd serve`` worker.

    ``mlcd serve`` keeps a user's ``OMP_NUM_THREADS`` and otherwise sets it to 1; the
    evaluation applies the same number to every pool threadpoolctl knows (OpenMP, OpenBLAS,
    MKL, BLIS), as the environment variable does for a fresh server process.
    """
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", "").strip())
    except ValueError:
        return 1
    return threads if threads > 0 else 1


@dataclass
class Timing:
    """One model's per-row timings (ms), one list per repetition block."""

    cpu: list[list[float]] = field(default_factory=list)
    wall: list[list[float]] = field(default_factory=list)
    throughput_rows_s: float = 0.0

    def _samples(self, clock: str) -> list[list[float]]:
        return self.cpu if clock == "cpu" else self.wall

    def value(self, metric: str) -> float:
        """The metric over every timed row (all blocks pooled)."""
        percentile, clock = LATENCY_METRICS[metric]
        pooled = [x for block in self._samples(clock) for x in block]
        return float(np.percentile(pooled, percentile))

    def blocks(self, metric: str) -> np.ndarray:
        """The metric in each repetition block."""
        percentile, clock = LATENCY_METRICS[metric]
        return np.array([np.percentile(b, percentile) for b in self._samples(clock)])

    def metrics(self) -> dict[str, float]:
        """``latency_*`` values and the batch throughput."""
        out = {name: self.value(name) for name in LATENCY_METRICS}
        out["throughput_rows_s"] = self.throughput_rows_s
        return out

    def noise(self) -> dict[str, float]:
        """Per metric, the range (max - min) of the per-block values."""
        return {name: float(np.ptp(self.blocks(name))) for name in LATENCY_METRICS}


def paired_noise(candidate: Timing, champion: Timing) -> dict[str, float]:
    """Per metric, the range of the per-block differences candidate - champion.

    Blocks of both models run next to each other, so a load that slows both moves the
    difference less than either value: this is the noise a relative budget sees.
    """
    out = {}
    for name in LATENCY_METRICS:
        a, b = candidate.blocks(name), champion.blocks(name)
        n = min(len(a), len(b))
        out[name] = float(np.ptp(a[:n] - b[:n])) if n else 0.0
    return out


def measure(
    models: Sequence[Any],
    frame: Any,
    rows: int = 200,
    repetitions: int = 5,
    seed: int = 0,
    threads: int | None = None,
) -> list[Timing]:
    """Time ``predict`` of each model on the same single rows, the models interleaved.

    Args:
        models: objects with ``predict(frame)`` (candidate first, champion second).
        frame: the rows to predict on (a pandas DataFrame of features).
        rows: timed rows per model, spread over the repetition blocks.
        repetitions: blocks; the models alternate block by block (ABBA).
        seed: which rows are drawn.
        threads: native pool size (default: :func:`serving_threads`).

    Returns:
        One :class:`Timing` per model, in the order given.
    """
    timings = [Timing() for _ in models]
    if len(frame) == 0 or not models or rows <= 0:
        return timings
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(frame), size=min(rows, len(frame)), replace=False)
    repetitions = max(1, min(repetitions, len(picks)))
    blocks = np.array_split(picks, repetitions)
    singles = [frame.iloc[[int(i)]] for i in picks]
    order = list(range(len(models)))
    with threadpool_limits(limits=threads or serving_threads()):
        for model in models:  # warm-up: first calls pay lazy set-up, not counted
            for row in singles[:WARM_UP]:
                model.predict(row)
        start_row = 0
        for number, block in enumerate(blocks):
            block_rows = singles[start_row : start_row + len(block)]
            start_row += len(block)
            for which in order if number % 2 == 0 else order[::-1]:
                predict = models[which].predict
                cpu, wall = [], []
                for row in block_rows:
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    predict(row)
                    cpu.append((time.thread_time() - start_cpu) * 1000.0)
                    wall.append((time.perf_counter() - start) * 1000.0)
                timings[which].cpu.append(cpu)
                timings[which].wall.append(wall)
        batch = frame.iloc[: min(len(frame), 10_000)]
        for which, model in enumerate(models):
            start = time.perf_counter()
            model.predict(batch)
            timings[which].throughput_rows_s = len(batch) / max(time.perf_counter() - start, 1e-9)
    return timings
