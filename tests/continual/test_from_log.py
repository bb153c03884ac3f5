"""`mlcd data from-log`: the served log joined with feedback equals a hand join, reproducibly."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlcd.errors import UsageError
from mlcd.logdata import read_log_dataset, read_manifest, write_dataset
from mlcd.store import predictions
from mlcd.store.tables import feedback
from tests.serve.conftest import Registry, cancer, cancer_model

URL = "/v1/models/cancer/predict"


def _log(registry: Registry) -> pd.DataFrame:
    with registry.store.read() as conn:
        segments = predictions.segments(conn, model="cancer")
    return pd.concat(
        [pq.read_table(registry.root / s["path"]).to_pandas() for s in segments], ignore_index=True
    )


def _feedback(registry: Registry) -> pd.DataFrame:
    from sqlalchemy import select

    with registry.store.read() as conn:
        rows = conn.execute(select(feedback.c.request_id, feedback.c.label)).all()
    return pd.DataFrame(rows, columns=["request_id", "label"])


@pytest.fixture
def served(registry: Registry, serve: Any) -> dict[str, Any]:
    """5,000 rows answered over HTTP by cancer@champion, shadowed by a second version, plus
    rejected requests; 3,000 labels stored out of order, one of them replaced."""
    X, y = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    registry.register("cancer", cancer_model(0.01), X.head(50), alias="shadowed")
    server = serve(shadow="shadowed")
    deadline = time.monotonic() + 30
    while server.service.shadow.current is None:
        assert time.monotonic() < deadline, "the shadow model did not load"
        time.sleep(0.05)
    truth: dict[str, int] = {}
    rng = np.random.default_rng(0)
    for _batch in range(50):
        rows = rng.integers(0, len(X), 100)
        body = server.client.post(URL, json=X.iloc[rows].to_dict(orient="records"))
        assert body.status_code == 200
        truth.update(zip(body.json()["request_ids"], y.iloc[rows].tolist(), strict=True))
    for i in range(3):
        bad = server.client.post(URL, json=[{"nope": 1}], headers={"x-request-id": f"bad-{i}"})
        assert bad.status_code == 422
    assert server.service.predlog.flush()
    ids = list(truth)
    labelled = random.Random(1).sample(ids, 3000)  # labels arrive in any order, in pieces
    for start in range(0, 3000, 700):
        part = labelled[start : start + 700]
        registry.store.transact(
            lambda conn, part=part: predictions.add_feedback(
                conn, [{"request_id": r, "label": truth[r]} for r in part], "cancer"
            )
        )
    replaced = labelled[10]
    truth[replaced] = 1 - truth[replaced]  # a client corrects one label: the last one wins
    registry.store.transact(
        lambda conn: predictions.add_feedback(
            conn, [{"request_id": replaced, "label": truth[replaced]}], "cancer"
        )
    )
    return {"truth": truth, "labelled": labelled, "replaced": replaced, "X": X}


def test_dataset_equals_a_hand_join_of_the_log_and_the_feedback(
    registry: Registry, served: dict[str, Any]
) -> None:
    dataset = read_log_dataset(registry.store, registry.root, "cancer", labelled_only=True)

    log = _log(registry)
    assert len(log[log["status"] == "ok"]) == 5000
    assert (log["status"] == "shadow").sum() == 5000 and (log["status"] == "rejected").sum() == 3
    hand = log[log["status"] == "ok"].merge(_feedback(registry), on="request_id", how="inner")
    features = list(served["X"].columns)
    hand = hand[["request_id", "ts", "version", *features, "label"]]
    hand = hand.sort_values(["ts", "request_id"]).reset_index(drop=True)
    got = dataset.frame
    assert len(got) == 3000 == dataset.labels_joined
    assert list(got.columns) == ["request_id", "ts", "version", *sorted(features), "label"]
    pd.testing.assert_frame_equal(got[hand.columns].reset_index(drop=True), hand, check_dtype=False)
    # The replaced label is the one in the dataset; shadow versions and rejected ids are not.
    row = got[got["request_id"] == served["replaced"]].iloc[0]
    assert row["label"] == served["truth"][served["replaced"]]
    assert set(got["version"]) == {1}
    assert not got["request_id"].str.startswith("bad-").any()
    # Inputs as the model saw them: the values it was sent.
    first = log[(log["status"] == "ok") & (log["request_id"] == got["request_id"][0])].iloc[0]
    assert got.loc[0, "mean radius"] == first["mean radius"]
    assert dataset.segments and sum(s.rows for s in dataset.segments) == 3000


def test_same_call_twice_gives_the_same_digest_and_new_labels_a_new_one(
    registry: Registry, served: dict[str, Any]
) -> None:
    first = read_log_dataset(registry.store, registry.root, "cancer", labelled_only=True)
    second = read_log_dataset(registry.store, registry.root, "cancer", labelled_only=True)
    a = write_dataset(first, registry.root / "a.parquet")
    b = write_dataset(second, registry.root / "b.parquet")
    assert a == b
    manifest = read_manifest(registry.root / "a.parquet")
    assert manifest is not None and manifest["labels"]["joined"] == 3000
    assert {s["id"] for s in manifest["segments"]} == {s.id for s in first.segments}
    assert all(s["digest"] for s in manifest["segments"])

    new_id = next(r for r in served["truth"] if r not in set(served["labelled"]))
    registry.store.transact(
        lambda conn: predictions.add_feedback(conn, [{"request_id": new_id, "label": 0}], "cancer")
    )
    third = read_log_dataset(registry.store, registry.root, "cancer", labelled_only=True)
    assert write_dataset(third, registry.root / "c.parquet") != a
    assert third.rows == 3001


def test_all_rows_sample_and_stratify(registry: Registry, served: dict[str, Any]) -> None:
    everything = read_log_dataset(registry.store, registry.root, "cancer")
    assert everything.rows == 5000 and everything.frame["label"].isna().sum() == 2000

    sample = read_log_dataset(
        registry.store, registry.root, "cancer", labelled_only=True, sample=500
    )
    again = read_log_dataset(
        registry.store, registry.root, "cancer", labelled_only=True, sample=500
    )
    assert sample.rows == 500 and list(sample.frame["request_id"]) == list(
        again.frame["request_id"]
    )
    balanced = read_log_dataset(
        registry.store, registry.root, "cancer", labelled_only=True, stratify="label"
    )
    counts = balanced.frame["label"].value_counts()
    assert (
        counts.nunique() == 1
        and counts.iloc[0] == _feedback(registry)["label"].value_counts().min()
    )
    split = read_log_dataset(
        registry.store, registry.root, "cancer", labelled_only=True, sample=400, stratify="label"
    )
    assert split.frame["label"].value_counts().to_dict() == {0: 200, 1: 200}


def test_bad_arguments_and_a_missing_segment_are_clear_errors(
    registry: Registry, served: dict[str, Any]
) -> None:
    with pytest.raises(UsageError, match="positive"):
        read_log_dataset(registry.store, registry.root, "cancer", sample=0)
    with pytest.raises(UsageError, match="no such column"):
        read_log_dataset(registry.store, registry.root, "cancer", stratify="nope")
    with pytest.raises(UsageError, match="also an input column"):
        read_log_dataset(registry.store, registry.root, "cancer", label="mean radius")
    with registry.store.read() as conn:
        path = registry.root / predictions.segments(conn, model="cancer")[0]["path"]
    path.rename(path.with_suffix(".moved"))
    with pytest.raises(UsageError, match="registered but missing"):
        read_log_dataset(registry.store, registry.root, "cancer")
