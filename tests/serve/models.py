"""Small real models for the server tests (importable, so pickled ones load in the server)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


class SlowModel:
    """Predicts 0 after sleeping: makes timeouts and the concurrency limit observable."""

    classes_ = None

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, X: Any) -> Any:
        # Warm-up scores one row; only real batches are slow, so loading stays quick.
        if len(X) > 1:
            time.sleep(self.seconds)
        return np.zeros(len(X))


class FlakyModel:
    """Fails on rows whose first column is above ``limit``: a canary with errors."""

    classes_ = None

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def predict(self, X: Any) -> Any:
        values = np.asarray(X, dtype=float)[:, 0]
        if (values > self.limit).any():
            raise ValueError(f"value above {self.limit}")
        return values * 2
