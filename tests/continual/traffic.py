"""Production traffic for continual-learning tests, written by the server's own log writer.

``log_rows`` sends rows through :class:`mlcd.serve.predlog.PredictionLog` (the writer behind
``mlcd serve``: Parquet segments registered in the store) and ``label`` stores feedback the way
``POST /feedback`` does, so a project's ``from_log`` inputs read exactly what a server leaves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcd.serve.predlog import LogEntry, PredictionLog
from mlcd.store import Store, predictions


def log_rows(
    store: Store,
    root: Path,
    model: str,
    frame: pd.DataFrame,
    *,
    prefix: str,
    ts: float,
    version: int = 1,
    status: str = "ok",
) -> list[str]:
    """Log every row of ``frame`` as answered by ``model`` v``version``; returns request ids."""
    writer = PredictionLog(store, root, root / ".mlcd" / "predictions", flush_interval_s=0.05)
    writer.start()
    ids = [f"{prefix}-{i}" for i in range(len(frame))]
    try:
        for start in range(0, len(frame), 100):
            part = frame.iloc[start : start + 100]
            writer.log(
                LogEntry(
                    model=model,
                    version=version,
                    ts=ts + start / 1000,
                    latency_ms=1.0,
                    status=status,
                    request_ids=ids[start : start + len(part)],
                    features={c: part[c].to_numpy() for c in part.columns},
                    predictions=np.zeros(len(part), dtype=np.int64),
                )
            )
        assert writer.flush(), "the prediction log did not flush"
    finally:
        writer.close()
    return ids


def label(store: Store, model: str, labels: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> None:
    """Store ground truth for request ids (a later label for the same id replaces it)."""
    items = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    store.transact(
        lambda conn: predictions.add_feedback(
            conn, [{"request_id": rid, "label": value} for rid, value in items], model
        )
    )
