"""The ``labels`` trigger (issue 15): N new labels since the last retrain it started.

On a real SQLite store, labels written the way the server stores feedback
(``predictions.add_feedback``): the first look records and never fires, fewer than N new labels
wait, N fire, and once the retrain has run (``remember_labels``) the same labels do not fire
again; a replaced label (same request id) is not a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcd.config import parse_config
from mlcd.errors import ConfigError
from mlcd.objects import open_object_store
from mlcd.retrain.context import Context
from mlcd.retrain.triggers import check_labels, evaluate_triggers, remember_labels
from mlcd.store import Store, predictions

CONFIG = """
models:
  churn: {path: models/churn}
retrain:
  churn:
    triggers:
      labels: {count: 3}
"""


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    store = Store(f"sqlite:///{tmp_path / 'mlcd.db'}")
    objects = open_object_store(str(tmp_path / "objects"), root=tmp_path)
    yield Context(tmp_path, parse_config(CONFIG), store, objects)
    store.dispose()


def _label(ctx: Context, *ids: str) -> None:
    ctx.store.transact(
        lambda conn: predictions.add_feedback(
            conn, [{"request_id": i, "label": 1} for i in ids], "churn"
        )
    )


def test_fires_once_per_threshold_of_new_labels(ctx: Context) -> None:
    policy = ctx.policy("churn")
    _label(ctx, "a", "b")
    first = check_labels(ctx, "churn", policy)
    assert not first.fired and "first look: 2" in first.reason

    _label(ctx, "c", "d")
    waiting = check_labels(ctx, "churn", policy)
    assert not waiting.fired and waiting.details["new"] == 2

    _label(ctx, "c")  # a replaced label is not a new one
    assert check_labels(ctx, "churn", policy).details["new"] == 2

    _label(ctx, "e")
    fired = check_labels(ctx, "churn", policy)
    assert fired.fired and fired.details == {"labels": 5, "count": 3, "new": 3}
    assert [r.trigger for r in evaluate_triggers(ctx, "churn") if r.fired] == ["labels"]

    remember_labels(ctx, "churn", fired)  # the retrain ran
    assert not check_labels(ctx, "churn", policy).fired
    _label(ctx, "f", "g", "h")
    assert check_labels(ctx, "churn", policy).fired


def test_count_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"triggers\.labels\.count"):
        parse_config(CONFIG.replace("count: 3", "count: 0"))
