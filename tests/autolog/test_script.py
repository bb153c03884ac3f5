"""``mlcd.autolog()`` in a plain script: a run of its own, ended at exit, with the params,
per-iteration metrics, model package and importances of each library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.autolog.conftest import DATA, run_script

FRAME = pd.DataFrame(np.random.RandomState(1).rand(5, 4), columns=["a", "b", "c", "d"])

SCRIPTS = {
    # a Pipeline: its steps' fits are nested, only the Pipeline logs
    "sklearn": """
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=4, max_depth=3))
        model.fit(X, y)
    """,
    # the native API: a DMatrix with feature names, two eval sets
    "xgboost": """
        import xgboost as xgb
        dtrain, dval = xgb.DMatrix(X, y), xgb.DMatrix(X_val, y_val)
        xgb.train({"objective": "binary:logistic", "max_depth": 2, "eta": 0.3}, dtrain, 6,
                  evals=[(dtrain, "train"), (dval, "val")], verbose_eval=False)
    """,
    # the scikit-learn API: the inner lightgbm.train logs the iterations
    "lightgbm": """
        import lightgbm as lgb
        model = lgb.LGBMClassifier(n_estimators=6, num_leaves=4, min_child_samples=5, verbose=-1)
        model.fit(X, y, eval_set=[(X_val, y_val)])
    """,
}


def _script(library: str) -> str:
    return (
        "import mlcd\nmlcd.autolog()\n"
        + DATA
        + __import__("textwrap").dedent(SCRIPTS[library])
        + "print('fitted')\n"
    )


@pytest.mark.parametrize("library", ["sklearn", "xgboost", "lightgbm"])
def test_a_plain_script_gets_a_run_with_params_steps_and_a_loadable_model(
    tmp_path: Path, recorded, library: str
) -> None:
    result = run_script(_script(library), tmp_path)
    assert "fitted" in result.stdout
    assert "mlcd autolog: logging to run" in result.stderr

    run = recorded(tmp_path)
    assert run.run["status"] == "finished"  # ended by the exit hook
    assert run.tags["mlcd.autolog"] == library
    if library == "sklearn":
        assert run.tags["estimator_name"] == "Pipeline"
        assert run.params["randomforestclassifier__n_estimators"] == "4"
        assert run.params["randomforestclassifier__max_depth"] == "3"
        assert 0.5 < run.latest["training_accuracy_score"] <= 1.0
        assert run.steps("training_accuracy_score") == [0]  # the Pipeline's fit, once
        assert "training_roc_auc" in run.latest
    elif library == "xgboost":
        assert run.params["max_depth"] == "2"
        assert run.params["num_boost_round"] == "6"
        assert run.steps("train-logloss") == list(range(6))
        assert run.steps("val-logloss") == list(range(6))
        importances = run.read_text("feature_importance.csv")
        assert importances.splitlines()[0] == "feature,gain,weight,cover"
        assert importances.splitlines()[1].startswith("a,")  # the strongest feature first
    else:
        assert run.tags["estimator_name"] == "LGBMClassifier"
        assert run.params["num_leaves"] == "4"
        assert run.params["n_estimators"] == "6"
        # logged live by the inner train(), not a second time from evals_result_
        assert run.steps("valid_0-binary_logloss") == list(range(6))
        header = run.read_text("feature_importance.csv").splitlines()[0]
        assert header == "feature,gain,split"

    model = run.load_model(tmp_path)
    assert [c.name for c in model.signature.inputs] == ["a", "b", "c", "d"]
    predictions = np.asarray(model.predict(FRAME))
    assert predictions.shape[0] == 5
    if library != "xgboost":  # a bare booster predicts scores, estimators the labels
        assert set(predictions.tolist()) <= {0, 1}


def test_a_script_in_a_project_logs_to_its_store(tmp_path: Path, recorded, store_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text(f"store: {store_url}\n", encoding="utf-8")
    run_script(_script("lightgbm"), root)

    run = recorded(root, store_url)
    assert run.run["status"] == "finished"
    assert run.steps("valid_0-binary_logloss") == list(range(6))
    assert run.load_model(tmp_path).predict(FRAME).shape == (5,)
