"""Traffic between versions: a canary share (sticky by key), and the guard that stops a bad canary.

The :class:`CanaryGuard` keeps, per arm, the outcomes of the last ``window_s`` seconds. Once
both arms have enough requests it compares them; a canary whose error rate or p99 latency is
clearly worse than the primary's is switched off (the server records an audit event).
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections import deque
from dataclasses import dataclass

from mlcd.errors import UsageError


@dataclass(frozen=True)
class CanarySpec:
    """``ALIAS:PERCENT`` from the command line."""

    alias: str
    percent: float

    @classmethod
    def parse(cls, text: str) -> CanarySpec:
        """Parse ``challenger:10``.

        Raises:
            UsageError: not ``ALIAS:PERCENT`` with 0 < PERCENT <= 100.
        """
        alias, sep, share = text.rpartition(":")
        try:
            percent = float(share)
        except ValueError:
            percent = -1.0
        if not sep or not alias or not 0 < percent <= 100:
            raise UsageError(
                f"--canary {text!r} is not ALIAS:PERCENT",
                hint="for example --canary challenger:10 sends 10% of requests to 'challenger'",
            )
        return cls(alias, percent)


class Router:
    """Decides per request whether the canary answers: sticky by key, else at random."""

    def __init__(self, percent: float, seed: int | None = None) -> None:
        self.percent = percent
        self._random = random.Random(seed)

    def to_canary(self, key: str | None) -> bool:
        """Whether this request goes to the canary."""
        if self.percent <= 0:
            return False
        if key:
            # crc32 is stable across processes and workers, unlike hash().
            return zlib.crc32(key.encode()) % 10_000 < self.percent * 100
        return self._random.random() * 100 < self.percent


class _Window:
    """Outcomes of one arm over the last ``window_s`` seconds (bounded)."""

    def __init__(self, window_s: float, cap: int = 20_000) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, float, bool]] = deque(maxlen=cap)

    def add(self, at: float, latency_s: float, error: bool) -> None:
        self.samples.append((at, latency_s, error))

    def trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()

    def counts(self) -> tuple[int, int, dict[str, int]]:
        """(requests, errors, latency histogram): what a replica shares with its fleet."""
        histogram: dict[str, int] = {}
        errors = 0
        for _at, latency_s, error in self.samples:
            errors += error
            key = str(bucket_of(latency_s))
            histogram[key] = histogram.get(key, 0) + 1
        return len(self.samples), errors, histogram

    def summary(self) -> tuple[int, float, float]:
        """(requests, error rate, tail latency in seconds).

        The tail is the p99, or on fewer than 500 requests the highest percentile with at
        least 5 requests above it: on 100 requests the p99 is the single slowest one, and
        one scheduling hiccup must not switch a healthy canary off.
        """
        n = len(self.samples)
        if n == 0:
            return 0, 0.0, 0.0
        errors = sum(1 for s in self.samples if s[2])
        latencies = sorted(s[1] for s in self.samples)
        quantile = min(0.99, 1.0 - _TAIL_SAMPLES / n)
        tail = latencies[max(0, min(n - 1, int(quantile * n)))]
        return n, errors / n, tail


#: Latency histogram buckets shared by replicas: geometric, 10 % wide, from 50 µs.
_BUCKET_MIN_S = 5e-5
_BUCKET_GROWTH = 1.1


def bucket_of(latency_s: float) -> int:
    """The histogram bucket of a latency (bucket i holds latencies up to its upper bound)."""
    if latency_s <= _BUCKET_MIN_S:
        return 0
    return math.ceil(math.log(latency_s / _BUCKET_MIN_S) / math.log(_BUCKET_GROWTH))


def bucket_upper(index: int) -> float:
    """The upper bound in seconds of bucket ``index``."""
    return _BUCKET_MIN_S * _BUCKET_GROWTH**index


def merged_summary(
    parts: list[tuple[int, int, dict[str, int]]],
) -> tuple[int, float, float]:
    """(requests, error rate, tail latency) of several replicas' counters together.

    The same tail rule as one replica's window (p99, or on fewer than 500 requests the
    highest percentile with 5 requests above it), read off the summed histogram: the upper
    bound of the bucket holding that rank, so at most 10 % above the exact value.
    """
    n = sum(p[0] for p in parts)
    if n == 0:
        return 0, 0.0, 0.0
    errors = sum(p[1] for p in parts)
    histogram: dict[int, int] = {}
    for _n, _e, hist in parts:
        for key, count in hist.items():
            histogram[int(key)] = histogram.get(int(key), 0) + int(count)
    quantile = min(0.99, 1.0 - _TAIL_SAMPLES / n)
    rank = max(0, min(n - 1, int(quantile * n)))
    seen = 0
    tail = 0.0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen > rank:
            tail = bucket_upper(index)
            break
    return n, errors / n, tail


@dataclass(frozen=True)
class Verdict:
    """Why a canary was switched off, with the figures that decided it."""

    reason: str
    canary: dict[str, float]
    primary: dict[str, float]


_TAIL_SAMPLES = 5


class CanaryGuard:
    """Switches a canary off when it is clearly worse than the primary.

    Args:
        window_s: how far back outcomes count.
        min_requests: requests each arm needs before a comparison is made.
        error_margin: the canary's error rate may exceed the primary's by at most this much.
        p99_ratio: and its p99 latency may be at most this many times the primary's...
        p99_floor_s: ...plus this floor, so that sub-millisecond noise never trips it.
        local: decide in :meth:`record` (one process on its own); False when a fleet decides
            from every replica's counters (see :mod:`mlcd.serve.fleet`).
    """

    def __init__(
        self,
        window_s: float = 60.0,
        min_requests: int = 50,
        error_margin: float = 0.05,
        p99_ratio: float = 2.0,
        p99_floor_s: float = 0.005,
        check_every_s: float = 1.0,
        local: bool = True,
    ) -> None:
        self.window_s = window_s
        self.local = local
        self.min_requests = min_requests
        self.error_margin = error_margin
        self.p99_ratio = p99_ratio
        self.p99_floor_s = p99_floor_s
        self.check_every_s = check_every_s
        self.arms = {"primary": _Window(window_s), "canary": _Window(window_s)}
        self._next_check = 0.0

    def record(self, arm: str, latency_s: float, error: bool) -> Verdict | None:
        """Add an outcome; returns a verdict when the canary must be switched off now."""
        now = time.monotonic()
        self.arms[arm].add(now, latency_s, error)
        if not self.local or now < self._next_check:
            return None
        self._next_check = now + self.check_every_s
        return self.check(now)

    def check(self, now: float | None = None) -> Verdict | None:
        """Compare the arms over the window."""
        now = time.monotonic() if now is None else now
        for window in self.arms.values():
            window.trim(now)
        return self.compare(self.arms["canary"].summary(), self.arms["primary"].summary())

    def counts(self) -> dict[str, tuple[int, int, dict[str, int]]]:
        """Each arm's (requests, errors, histogram) over the window, for the fleet."""
        now = time.monotonic()
        for window in self.arms.values():
            window.trim(now)
        return {arm: window.counts() for arm, window in self.arms.items()}

    def compare(
        self, canary_arm: tuple[int, float, float], primary_arm: tuple[int, float, float]
    ) -> Verdict | None:
        """The verdict on two arms' (requests, error rate, tail seconds), or None."""
        n_c, err_c, p99_c = canary_arm
        n_p, err_p, p99_p = primary_arm
        if n_c < self.min_requests or n_p < self.min_requests:
            return None
        canary = {"requests": n_c, "error_rate": err_c, "p99_ms": p99_c * 1000}
        primary = {"requests": n_p, "error_rate": err_p, "p99_ms": p99_p * 1000}
        if err_c > err_p + self.error_margin:
            return Verdict(
                f"canary error rate {err_c:.1%} vs primary {err_p:.1%} over the last "
                f"{n_c} canary requests",
                canary,
                primary,
            )
        if p99_c > p99_p * self.p99_ratio + self.p99_floor_s:
            return Verdict(
                f"canary p99 latency {p99_c * 1000:.1f} ms vs primary {p99_p * 1000:.1f} ms",
                canary,
                primary,
            )
        return None
