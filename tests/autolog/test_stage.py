"""``autolog: true`` on stages: scripts that never import mlcd log to the pipeline run, through
the ``sitecustomize`` mlcd puts on the stage's ``PYTHONPATH`` (after the one it shadows)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from tests.autolog.conftest import DATA, script_env
from tests.conftest import run_cli

STAGE_SCRIPTS = {
    # the scikit-learn API of xgboost; sklearn and lightgbm use their other API in test_script
    "sk": """
        from sklearn.ensemble import GradientBoostingClassifier
        GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(X, y)
    """,
    "xgb": """
        import xgboost as xgb
        xgb.XGBClassifier(n_estimators=5, max_depth=2, learning_rate=0.1).fit(
            X, y, eval_set=[(X_val, y_val)], verbose=False)
    """,
    "lgb": """
        import lightgbm as lgb
        lgb.train({"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "verbose": -1},
                  lgb.Dataset(X, y), 5, valid_sets=[lgb.Dataset(X_val, y_val)],
                  valid_names=["holdout"])
    """,
}

# A sitecustomize of the user's own, already on PYTHONPATH: mlcd's must run it too.
OTHER_SITECUSTOMIZE = """
import os
os.environ["USER_SITECUSTOMIZE_RAN"] = "1"
"""


def _project(root: Path, store_url: str) -> None:
    stages = []
    for name, body in STAGE_SCRIPTS.items():
        code = (
            "import os\n"
            + DATA
            + textwrap.dedent(body)
            + f"open('{name}.done', 'w').write(os.environ.get('USER_SITECUSTOMIZE_RAN', '0'))\n"
        )
        (root / f"train_{name}.py").write_text(code, encoding="utf-8")
        stages.append(
            f"  {name}:\n"
            f"    cmd: {sys.executable} train_{name}.py\n"
            f"    deps: [train_{name}.py]\n"
            f"    outs: [{name}.done]\n"
            f"    autolog: true\n"
            f"    env: {{PYTHONPATH: {root / 'usersite'}}}\n"
        )
    (root / "usersite").mkdir()
    (root / "usersite" / "sitecustomize.py").write_text(OTHER_SITECUSTOMIZE, encoding="utf-8")
    (root / "mlcd.yaml").write_text(
        f"store: {store_url}\nstages:\n" + "".join(stages), encoding="utf-8"
    )


def test_autolog_true_records_each_library_on_the_pipeline_run(
    tmp_path: Path, recorded, store_url: str
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _project(root, store_url)
    env = {k: v for k, v in script_env().items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = run_cli(["run", "--json"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert {s["outcome"] for s in json.loads(result.stdout)["stages"]} == {"ran"}
    # the user's sitecustomize ran in every stage, before mlcd's turned autolog on
    assert all((root / f"{name}.done").read_text() == "1" for name in STAGE_SCRIPTS)

    run = recorded(root, store_url, kind="pipeline")
    # sklearn: params and training metrics (the stages share one pipeline run, and stages run
    # in parallel: a key two stages log, like learning_rate, keeps the value written last, so
    # the sk and xgb stages give the same one; xgboost's default would be logged as None)
    assert run.params["max_depth"] == "2"
    assert run.params["learning_rate"] == "0.1"
    assert run.steps("training_accuracy_score") == [0]
    # xgboost's scikit-learn API: iterations through the inner train(), once
    assert run.steps("validation_0-logloss") == list(range(5))
    # lightgbm's native train: the eval set under its own name
    assert run.steps("holdout-binary_logloss") == list(range(5))
    assert run.params["num_leaves"] == "4"

    frame = pd.DataFrame(np.random.RandomState(2).rand(3, 4), columns=["a", "b", "c", "d"])
    for stage in STAGE_SCRIPTS:
        assert run.artifact("feature_importance.csv", stage).size > 0
        model = run.load_model(tmp_path, stage=stage)
        assert model.package.lineage["run_id"] == run.run_id
        assert model.package.lineage["stage"] == stage
        assert [c.name for c in model.signature.inputs] == ["a", "b", "c", "d"]
        assert np.asarray(model.predict(frame)).shape[0] == 3


def test_a_stage_without_autolog_records_nothing(tmp_path: Path, recorded) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text(
        DATA + "from sklearn.linear_model import LogisticRegression\n"
        "LogisticRegression().fit(X, y)\nopen('done', 'w').write('1')\n",
        encoding="utf-8",
    )
    (root / "mlcd.yaml").write_text(
        f"stages:\n  train:\n    cmd: {sys.executable} train.py\n    outs: [done]\n",
        encoding="utf-8",
    )
    result = run_cli(["run"], cwd=root, env=script_env())
    assert result.returncode == 0, result.stderr

    run = recorded(root, kind="pipeline")
    assert run.params == {}
    assert "training_score" not in run.latest
    assert not [a for a in run.files if a.role == "artifact"]
