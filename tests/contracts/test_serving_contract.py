"""The training data's contract travels in the package and the server refuses what breaks it.

A model saved with its training contract (explicitly, or found by ``mlcd run`` from ``data:``
for a ``training_data`` path) answers 422 naming the rule for a request outside it, logs the
request as rejected, and still answers requests inside it; warn-only rules refuse nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlcd.registry import ModelPackage
from tests.pipeline.conftest import Cli, run_json
from tests.serve.conftest import Registry

CONTRACT = {
    "name": "customers",
    "path": "data/train.parquet",
    "columns": {
        "tenure": {"min": 0, "max": 72},
        "plan": {"allowed": ["a", "b"]},
        "charges": {"max": 150, "warn": True},
        "unused": {"min": 0},
    },
}


def _model() -> tuple[Any, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, 300),
            "charges": rng.uniform(20, 120, 300),
            "plan": rng.choice(["a", "b"], 300),
        }
    )
    y = (X["tenure"] < 20).astype(int)
    columns = ColumnTransformer([("plan", OneHotEncoder(), ["plan"])], remainder="passthrough")
    return Pipeline([("c", columns), ("m", LogisticRegression(max_iter=500))]).fit(X, y), X


def test_a_request_outside_the_training_contract_gets_a_422_naming_the_rule(
    registry: Registry, serve: Any
) -> None:
    model, X = _model()
    version = registry.register("churn", model, X.head(20), contract=CONTRACT)
    server = serve("churn@champion")
    url = "/v1/models/churn/predict"
    ok = server.client.post(url, json=[{"tenure": 10, "charges": 300.0, "plan": "a"}])
    assert ok.status_code == 200, ok.text  # charges > 150 is a warn-only rule
    too_long = server.client.post(
        url,
        json=[
            {"tenure": 10, "charges": 50.0, "plan": "a"},
            {"tenure": 500, "charges": 50.0, "plan": "b"},
        ],
    )
    assert too_long.status_code == 422
    body = too_long.json()
    assert body["column"] == "tenure" and body["row"] == 1
    assert "500 is above the maximum 72 of data contract 'customers' (rule max)" in body["error"]
    unknown = server.client.post(url, json=[{"tenure": 1, "charges": 50.0, "plan": "z"}])
    assert unknown.status_code == 422
    assert "allowed values of data contract 'customers' (rule allowed)" in unknown.json()["error"]
    # The OIP v2 endpoint goes through the same check.
    v2 = server.client.post(
        "/v2/models/churn/infer",
        json={
            "inputs": [
                {"name": "tenure", "shape": [1], "datatype": "INT64", "data": [-1]},
                {"name": "charges", "shape": [1], "datatype": "FP64", "data": [50.0]},
                {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["a"]},
            ]
        },
    )
    assert v2.status_code == 422 and "below the minimum 0" in v2.text
    # The package says which rules it carries (only the columns the model reads).
    stored = server.client.get("/v1/models/churn").json()
    assert stored["primary"]["version"] == version
    assert server.service.predlog.flush()
    from mlcd.store import predictions

    with registry.store.read() as conn:
        segments = predictions.segments(conn, model="churn")
    log = pd.concat([pd.read_parquet(registry.root / s["path"]) for s in segments])
    assert (log["status"] == "rejected").sum() == 3 and (log["status"] == "ok").sum() == 1


CONFIG = """
stages:
  train:
    cmd: python train.py
    deps: [train.py, train.parquet]
    outs: [model]
data:
  customers:
    path: train.parquet
    columns:
      tenure: {type: integer, min: 0, max: 72}
      other: {min: 0}
"""

TRAIN = """
import pandas as pd
from sklearn.linear_model import LogisticRegression
import mlcd
X = pd.read_parquet("train.parquet")
model = LogisticRegression().fit(X[["tenure"]], X["y"])
mlcd.save_model(model, "model", sample_input=X[["tenure"]].head(), training_data=["train.parquet"])
"""


def test_mlcd_run_puts_the_declared_contract_of_the_training_data_in_the_package(
    make_project: Cli, mlcd: Cli
) -> None:
    root: Path = make_project(CONFIG, {"train.py": TRAIN})
    frame = {"tenure": range(60), "other": range(60), "y": [i % 2 for i in range(60)]}
    pd.DataFrame(frame).to_parquet(root / "train.parquet")
    assert run_json(mlcd, root)
    package = ModelPackage.read(root / "model")
    assert package.contract == {
        "name": "customers",
        "path": "train.parquet",
        "columns": {"tenure": {"type": "integer", "min": 0.0, "max": 72.0}},
    }
    assert "contract" in (root / "model" / "model.yaml").read_text()
    json.dumps(package.to_dict())  # the contract is plain data


def test_the_monitor_counts_contract_violations_in_logged_traffic(
    registry: Registry, serve: Any
) -> None:
    from mlcd.config import parse_config
    from mlcd.monitor.run import run_monitor

    model, X = _model()
    registry.register("churn", model, X.head(20), contract=CONTRACT)
    server = serve("churn@champion")
    rows = [{"tenure": 5, "charges": 300.0 if i < 30 else 60.0, "plan": "a"} for i in range(80)]
    for start in range(0, 80, 20):
        answer = server.client.post("/v1/models/churn/predict", json=rows[start : start + 20])
        assert answer.status_code == 200  # charges > 150 is only a warning
    refused = server.client.post(
        "/v1/models/churn/predict", json=[{"tenure": 99, "charges": 1.0, "plan": "a"}]
    )
    assert refused.status_code == 422
    assert server.service.predlog.flush()
    X.to_parquet(registry.root / "reference.parquet")
    report = run_monitor(
        config=parse_config("{}"),
        root=registry.root,
        target="churn@champion",
        store=registry.store,
        objects=registry.objects,
        last=1000,
        reference=registry.root / "reference.parquet",
    )
    contract = report.to_dict()["contract"]
    assert contract["name"] == "customers"
    assert contract["violations"]["charges:max"] == 30
    assert contract["violations"]["tenure:max"] == 0  # the refused row was never answered
    assert any("charges:max 30" in w for w in report.warnings)


def test_numbers_compare_as_numbers_and_the_warm_up_row_is_not_judged(
    registry: Registry, serve: Any
) -> None:
    # guards against a model that never loads: the synthetic warm-up row (mid-range values)
    # broke an 'allowed: [0, 1]' rule, and 0.0 from JSON was not the allowed 0
    model, X = _model()
    strict = {"name": "strict", "columns": {"tenure": {"allowed": [0, 1, 2]}}}
    registry.register("churn", model, X.head(20), contract=strict)
    server = serve("churn@champion")
    ok = server.client.post(
        "/v1/models/churn/predict", json=[{"tenure": 1.0, "charges": 5.0, "plan": "a"}]
    )
    assert ok.status_code == 200, ok.text
    bad = server.client.post(
        "/v1/models/churn/predict", json=[{"tenure": 3, "charges": 5.0, "plan": "a"}]
    )
    assert bad.status_code == 422 and "data contract 'strict'" in bad.json()["error"]
