"""Shared helpers for the benchmark scripts: timing, medians, JSON lines, tables."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def time_call(fn: Callable[[], Any], reps: int) -> list[float]:
    """Wall times of ``reps`` calls of ``fn``."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_command(argv: Sequence[str], reps: int, warmup: int = 1, **kwargs: Any) -> list[float]:
    """Wall times of running a command ``reps`` times (after ``warmup`` runs)."""
    for _ in range(warmup):
        subprocess.run(argv, check=True, capture_output=True, **kwargs)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, **kwargs)
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(name: str, **fields: Any) -> None:
    """Print one JSON line of results."""
    sys.stdout.write(json.dumps({"bench": name, **fields}) + "\n")
    sys.stdout.flush()
