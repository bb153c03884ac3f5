"""Each flavor saves in its native format and loads back to the same predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlcd.errors import RegistryError
from mlcd.registry import load_model, save_model
from mlcd.registry.flavors import detect_flavor, get_flavor


@pytest.fixture
def data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.random(400), "b": rng.random(400), "c": rng.random(400)})
    y = ((X.a + 0.5 * X.b + rng.normal(0, 0.1, 400)) > 0.75).astype(int)
    return X, y


def _files(path: Path) -> set[str]:
    return set(yaml.safe_load((path / "model.yaml").read_text())["files"])


def test_xgboost_classifier_uses_native_format(tmp_path: Path, data) -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = data
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)

    save_model(model, tmp_path / "pkg", sample_input=X)
    loaded = load_model(tmp_path / "pkg")

    assert loaded.flavor == "xgboost"
    assert _files(tmp_path / "pkg") == {"model.ubj"}
    assert loaded.classes == [0, 1]
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_xgboost_regressor(tmp_path: Path, data) -> None:
    xgboost = pytest.importorskip("xgboost")
    X, _ = data
    model = xgboost.XGBRegressor(n_estimators=10).fit(X, X.a * 3)

    save_model(model, tmp_path / "pkg", sample_input=X)
    loaded = load_model(tmp_path / "pkg")

    assert loaded.task == "regression"
    assert loaded.predict_proba(X) is None
    assert np.allclose(loaded.predict(X), model.predict(X))


def test_lightgbm_classifier_keeps_string_labels(tmp_path: Path, data) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    X, y = data
    labels = y.map({0: "stay", 1: "leave"})
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, labels)

    save_model(model, tmp_path / "pkg", sample_input=X)
    loaded = load_model(tmp_path / "pkg")

    assert loaded.flavor == "lightgbm"
    assert _files(tmp_path / "pkg") == {"model.txt"}
    assert loaded.classes == ["leave", "stay"]
    assert loaded.predict(X).tolist() == model.predict(X).tolist()
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_lightgbm_multiclass_and_regression(tmp_path: Path, data) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    X, _ = data
    three = pd.cut(X.a, [0, 0.3, 0.6, 1.0], labels=[0, 1, 2]).astype(int)
    classifier = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, three)
    regressor = lightgbm.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, X.b)

    save_model(classifier, tmp_path / "cls", sample_input=X)
    save_model(regressor, tmp_path / "reg", sample_input=X)

    loaded = load_model(tmp_path / "cls")
    assert loaded.predict(X).tolist() == classifier.predict(X).tolist()
    assert loaded.predict_proba(X).shape == (len(X), 3)
    assert np.allclose(load_model(tmp_path / "reg").predict(X), regressor.predict(X))


def test_onnx_model_runs_with_onnxruntime(tmp_path: Path, data) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    X, y = data
    model = LogisticRegression().fit(X.to_numpy(np.float32), y)
    proto = skl2onnx.to_onnx(model, X.to_numpy(np.float32)[:1])

    save_model(proto, tmp_path / "pkg", sample_input=X)
    loaded = load_model(tmp_path / "pkg")

    assert loaded.flavor == "onnx"
    assert _files(tmp_path / "pkg") == {"model.onnx"}
    assert loaded.classes == [0, 1]
    assert np.array_equal(loaded.predict(X), model.predict(X.to_numpy(np.float32)))
    assert np.allclose(
        loaded.predict_proba(X), model.predict_proba(X.to_numpy(np.float32)), atol=1e-5
    )


def test_detection_prefers_native_flavors_over_sklearn(data) -> None:
    xgboost = pytest.importorskip("xgboost")
    from sklearn.linear_model import LinearRegression

    assert detect_flavor(xgboost.XGBRegressor()).name == "xgboost"
    assert detect_flavor(LinearRegression()).name == "sklearn"


def test_unknown_flavor_and_undetectable_model_are_explained() -> None:
    with pytest.raises(RegistryError, match="unknown model flavor 'tensorflow'") as info:
        get_flavor("tensorflow")
    assert "sklearn" in (info.value.hint or "")
    with pytest.raises(RegistryError, match="cannot tell which flavor"):
        detect_flavor(object())
