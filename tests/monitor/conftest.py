"""Monitor fixtures: synthetic data with known shifts, and a real prediction log on disk."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcd.store import Store


def frame(
    n: int, seed: int, shift: dict[str, float] | None = None, columns: int = 10
) -> pd.DataFrame:
    """``columns`` standard-normal features ``x0..``; ``shift`` adds to the named ones."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({f"x{i}": rng.standard_normal(n) for i in range(columns)})
    for name, delta in (shift or {}).items():
        data[name] = data[name] + delta
    return data


@dataclass
class PredictionLogDir:
    """A project root with a metadata store, where tests write prediction-log segments."""

    root: Path
    store: Store

    def write(self, model: str, version: int | None, rows: pd.DataFrame) -> Path:
        """Write ``rows`` as one segment (the documented layout) and register it."""
        from mlcd.store.predictions import add_segment

        rows = rows.copy()
        if "model" not in rows.columns:
            rows["model"] = model
        if "version" not in rows.columns:
            rows["version"] = version
        if "status" not in rows.columns:
            rows["status"] = "ok"
        if "request_id" not in rows.columns:
            rows["request_id"] = [uuid.uuid4().hex for _ in range(len(rows))]
        first, last = float(rows["ts"].min()), float(rows["ts"].max())
        day = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d")
        relative = Path(".mlcd/predictions") / f"model={model}" / f"date={day}"
        relative = relative / f"{int(first)}-{uuid.uuid4().hex}.parquet"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(path, index=False)
        self.store.transact(
            lambda conn: add_segment(
                conn,
                model=model,
                version=version,
                path=relative.as_posix(),
                rows=len(rows),
                first_at=first,
                last_at=last,
            )
        )
        return path

    def feedback(self, model: str, labels: dict[str, Any], at: float) -> None:
        """Store labels as if received at ``at`` (the feedback table, as the server writes it)."""
        from mlcd.store.tables import feedback

        rows = [
            {"request_id": rid, "model": model, "label": label, "received_at": at}
            for rid, label in labels.items()
        ]
        self.store.transact(lambda conn: conn.execute(feedback.insert(), rows))


@pytest.fixture
def log_dir(tmp_path: Path, open_store: Callable[..., Store]) -> Iterator[PredictionLogDir]:
    """A project folder with a SQLite store for prediction-log tests."""
    root = tmp_path / "project"
    root.mkdir()
    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    yield PredictionLogDir(root, store)
