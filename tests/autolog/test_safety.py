"""Autologging never breaks training, and nested fits log once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.errors import UsageError
from mlcd.tracking.autolog import SITE_DIR, autolog, autolog_env
from tests.autolog.conftest import DATA, run_script


def test_a_failing_logger_warns_and_the_fit_still_works(tmp_path: Path, recorded) -> None:
    # An estimator whose introspection raises (params, importances, prediction for the
    # training metrics, saving): every step fails, the fit returns and the model works.
    result = run_script(
        "import mlcd\nmlcd.autolog()\n"
        + DATA
        + """
from sklearn.linear_model import LogisticRegression

class Awkward(LogisticRegression):
    def get_params(self, deep=True):
        if deep:  # scikit-learn's own validation asks for deep=False
            raise RuntimeError("no params today")
        return super().get_params(deep)
    @property
    def feature_importances_(self):
        raise RuntimeError("no importances either")
    def predict_proba(self, X):
        raise RuntimeError("cannot predict yet")

model = Awkward().fit(X, y)
assert model is not None and model.coef_.shape == (1, 4)
print("fit ok")
""",
        tmp_path,
    )
    assert "fit ok" in result.stdout
    assert "mlcd autolog: could not" in result.stderr
    assert "training is unaffected" in result.stderr
    run = recorded(tmp_path)
    assert run.run["status"] == "finished"
    assert run.params == {}  # get_params raised: nothing, and nothing else broke


def test_no_run_possible_warns_once_per_fit_and_trains(tmp_path: Path) -> None:
    # an mlcd.yaml that does not parse: autolog cannot start a run; training goes on
    (tmp_path / "mlcd.yaml").write_text("stages: [oops\n", encoding="utf-8")
    result = run_script(
        "import mlcd\nmlcd.autolog()\n"
        + DATA
        + """
import lightgbm as lgb
model = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y, eval_set=[(X_val, y_val)])
print("predicted", len(model.predict(X_val)))
""",
        tmp_path,
    )
    assert "predicted 40" in result.stdout
    assert "mlcd autolog: could not start logging the fit" in result.stderr
    assert not (tmp_path / ".mlcd").exists()


def test_nested_fits_log_once(tmp_path: Path, recorded) -> None:
    # A grid search fits 2 x 2 clones of a Pipeline (each fitting a scaler and a model) and
    # refits the best: 15 fit calls, one record.
    run_script(
        "import mlcd\nmlcd.autolog()\n"
        + DATA
        + """
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
pipe = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
with mlcd.start_run("grid") as run:
    GridSearchCV(pipe, {"model__C": [0.1, 1.0]}, cv=2).fit(X, y)
""",
        tmp_path,
    )
    run = recorded(tmp_path)
    assert run.run["name"] == "grid"  # the user's run, not one of autolog's own
    assert run.tags["estimator_name"] == "GridSearchCV"
    assert run.params["cv"] == "2"
    assert run.steps("training_score") == [0]
    assert [a.path for a in run.files if a.role == "artifact"] == ["model"]


def test_disable_restores_the_original_methods(tmp_path: Path) -> None:
    result = run_script(
        """
import mlcd
from sklearn.linear_model import LogisticRegression
import lightgbm, xgboost
before = (LogisticRegression.fit, lightgbm.train, xgboost.train, xgboost.sklearn.XGBModel.fit)
mlcd.autolog()
during = (LogisticRegression.fit, lightgbm.train, xgboost.train, xgboost.sklearn.XGBModel.fit)
mlcd.autolog(disable=True)
after = (LogisticRegression.fit, lightgbm.train, xgboost.train, xgboost.sklearn.XGBModel.fit)
print(all(a is not b for a, b in zip(before, during)), all(a is b for a, b in zip(before, after)))
""",
        tmp_path,
    )
    assert result.stdout.split() == ["True", "True"]


def test_an_unknown_library_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown library torch"):
        autolog(libraries=["sklearn", "torch"])


def test_the_stage_environment_puts_the_site_folder_first() -> None:
    assert autolog_env({"PYTHONPATH": "/x"}) == {}
    env = autolog_env({"MLCD_AUTOLOG": "1", "PYTHONPATH": "/x"})
    assert env["PYTHONPATH"].split(":") == [SITE_DIR, "/x"]
    assert (Path(SITE_DIR) / "sitecustomize.py").is_file()


def test_fits_in_worker_threads_and_processes_are_nested(tmp_path: Path, recorded) -> None:
    # As in a stage with autolog: true, every Python started (loky's workers too) turns
    # autologging on; the workers' fits must not log, in threads or in processes.
    run_script(
        DATA
        + """
import joblib, mlcd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
search = lambda: GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2, n_jobs=2)
with mlcd.start_run("threads"), joblib.parallel_backend("threading", n_jobs=2):
    search().fit(X, y)
with mlcd.start_run("processes"):
    search().fit(X, y)
""",
        tmp_path,
        MLCD_AUTOLOG="1",
        PYTHONPATH=SITE_DIR,
    )
    for name in ("threads", "processes"):
        run = recorded(tmp_path, name=name)
        assert run.tags["estimator_name"] == "GridSearchCV"
        assert run.steps("training_score") == [0]
        assert [a.path for a in run.files if a.role == "artifact"] == ["model"]
    assert recorded.count(tmp_path) == 2  # no run of a worker's own
