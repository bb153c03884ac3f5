"""Model packages: what save_model writes, and what load_model refuses."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlcd.errors import RegistryError, UnsafeModel, UsageError
from mlcd.registry import ModelPackage, content_digest, load_model, package_digest, save_model
from tests.registry.fixtures import churn_frame, save_churn_model, trained


class Doubler:
    """A custom model only the generic Python flavor can save."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(X.iloc[:, 0]) * 2


def _custom_transform(X: np.ndarray) -> np.ndarray:
    return X + 1


@pytest.fixture
def frame() -> pd.DataFrame:
    return churn_frame(600)


def test_save_writes_model_yaml_with_signature_versions_and_digests(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    sample = frame.drop(columns="churned").copy()
    sample.loc[3, "spend"] = np.nan
    model = trained(frame.fillna(0))
    save_model(model, tmp_path / "pkg", sample_input=sample)

    meta = yaml.safe_load((tmp_path / "pkg" / "model.yaml").read_text())
    assert meta["flavor"] == "sklearn"
    assert meta["options"] == {"file": "model.skops", "format": "skops"}
    assert set(meta["files"]) == {"model.skops"}
    assert meta["libraries"]["scikit-learn"]
    assert meta["python"].count(".") == 2
    columns = {c["name"]: c for c in meta["signature"]["inputs"]}
    assert columns["age"]["kind"] == "numeric"
    assert columns["age"]["min"] == float(sample.age.min())
    assert columns["age"]["max"] == float(sample.age.max())
    assert columns["spend"]["nullable"] is True
    assert columns["plan"]["kind"] == "categorical"
    assert columns["plan"]["categories"] == ["a", "b", "c"]
    assert meta["signature"]["output"] == {
        "task": "classification",
        "dtype": "int64",
        "classes": [0, 1],
        "proba": True,
    }
    digest = meta["files"]["model.skops"]["digest"]
    assert digest == content_digest(tmp_path / "pkg" / "model.skops").hex


def test_loaded_package_predicts_like_the_original(tmp_path: Path, frame: pd.DataFrame) -> None:
    model = save_churn_model(tmp_path / "pkg", frame)
    X = frame.drop(columns="churned")

    loaded = load_model(tmp_path / "pkg")

    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.classes == [0, 1]
    assert loaded.name is None and loaded.version is None
    assert loaded.digest == str(content_digest(tmp_path / "pkg"))
    assert loaded.signature.columns == ["age", "spend", "plan"]


def test_predict_accepts_row_dicts_and_reorders_columns(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    model = save_churn_model(tmp_path / "pkg", frame)
    loaded = load_model(tmp_path / "pkg")
    rows = [
        {"plan": "a", "spend": 10.0, "age": 60, "extra": 1},
        {"plan": "c", "spend": 90.0, "age": 20},
    ]

    expected = model.predict(pd.DataFrame(rows)[["age", "spend", "plan"]])

    assert loaded.predict(rows).tolist() == expected.tolist()
    assert loaded.predict({"age": 60, "spend": 10.0, "plan": "a"}).tolist() == expected[:1].tolist()


def test_missing_input_column_is_a_usage_error_naming_it(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    loaded = load_model(tmp_path / "pkg")

    with pytest.raises(UsageError, match="'plan'"):
        loaded.predict(pd.DataFrame({"age": [30], "spend": [1.0]}))


def test_numbers_sent_as_text_are_converted_and_bad_ones_named(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    model = save_churn_model(tmp_path / "pkg", frame)
    loaded = load_model(tmp_path / "pkg")
    rows = pd.DataFrame({"age": ["61", "22"], "spend": ["10.5", "80"], "plan": ["a", "b"]})

    expected = model.predict(rows.astype({"age": int, "spend": float}))

    assert loaded.predict(rows).tolist() == expected.tolist()
    with pytest.raises(UsageError, match="column 'age' must be numeric"):
        loaded.predict(rows.assign(age=["old", "young"]))


def test_tampered_model_file_is_refused_naming_the_file(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    target = tmp_path / "pkg" / "model.skops"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))

    with pytest.raises(UnsafeModel, match=r"file 'model\.skops' was modified"):
        load_model(tmp_path / "pkg")


def test_path_leaving_the_package_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    meta_path = tmp_path / "pkg" / "model.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    (tmp_path / "outside.skops").write_bytes((tmp_path / "pkg" / "model.skops").read_bytes())
    meta["files"] = {"../outside.skops": meta["files"]["model.skops"]}
    meta["options"]["file"] = "../outside.skops"
    meta_path.write_text(yaml.safe_dump(meta))

    with pytest.raises(
        UnsafeModel, match=r"'\.\./outside\.skops' in model\.yaml leaves the package"
    ):
        load_model(tmp_path / "pkg")


def test_absolute_path_in_model_yaml_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    meta_path = tmp_path / "pkg" / "model.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["files"]["/etc/passwd"] = {"digest": "0" * 64, "size": 1}
    meta_path.write_text(yaml.safe_dump(meta))

    with pytest.raises(UnsafeModel, match="leaves the package folder"):
        ModelPackage.read(tmp_path / "pkg")


def test_symlink_escaping_the_package_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", tmp_path / "pkg" / "link")

    with pytest.raises(UnsafeModel, match="'link' is a symbolic link"):
        load_model(tmp_path / "pkg")


def test_unlisted_file_in_package_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    (tmp_path / "pkg" / "extra.pkl").write_bytes(pickle.dumps(1))

    with pytest.raises(UnsafeModel, match=r"'extra\.pkl' is not listed in model\.yaml"):
        load_model(tmp_path / "pkg")


def test_missing_listed_file_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    save_churn_model(tmp_path / "pkg", frame)
    (tmp_path / "pkg" / "model.skops").unlink()

    with pytest.raises(UnsafeModel, match=r"'model\.skops' listed in model\.yaml is missing"):
        load_model(tmp_path / "pkg")


def test_folder_without_model_yaml_is_not_a_package(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()

    with pytest.raises(RegistryError, match=r"has no model\.yaml") as info:
        load_model(tmp_path / "pkg")
    assert "save_model" in (info.value.hint or "")


def test_generic_python_model_needs_trust_to_save_and_to_load(tmp_path: Path) -> None:
    sample = pd.DataFrame({"x": [1.0, 2.0]})

    with pytest.raises(UsageError, match="pickle"):
        save_model(Doubler(), tmp_path / "pkg", sample_input=sample)
    save_model(Doubler(), tmp_path / "pkg", sample_input=sample, trusted=True)

    with pytest.raises(UnsafeModel, match="pickle") as info:
        load_model(tmp_path / "pkg")
    assert "trusted=True" in (info.value.hint or "")
    loaded = load_model(tmp_path / "pkg", trusted=True)
    assert loaded.predict(pd.DataFrame({"x": [3.0]})).tolist() == [6.0]
    assert loaded.predict_proba(pd.DataFrame({"x": [3.0]})) is None


def test_sklearn_pickle_serialization_needs_trust(tmp_path: Path, frame: pd.DataFrame) -> None:
    model = trained(frame)
    sample = frame.drop(columns="churned")

    with pytest.raises(UsageError, match="trusted=True"):
        save_model(model, tmp_path / "pkg", sample_input=sample, serialization="pickle")
    save_model(model, tmp_path / "pkg", sample_input=sample, serialization="pickle", trusted=True)

    with pytest.raises(UnsafeModel, match="pickle"):
        load_model(tmp_path / "pkg")
    assert load_model(tmp_path / "pkg", trusted=True).predict(sample.head(2)).shape == (2,)


def test_skops_refuses_types_from_outside_known_libraries(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = pd.DataFrame({"x": np.arange(20.0)})
    model = make_pipeline(FunctionTransformer(_custom_transform), LinearRegression()).fit(
        X, np.arange(20.0)
    )
    save_model(model, tmp_path / "pkg", sample_input=X)

    with pytest.raises(UnsafeModel, match="_custom_transform"):
        load_model(tmp_path / "pkg")
    assert load_model(tmp_path / "pkg", trusted=True).predict(X.head(1)).shape == (1,)


def test_save_refuses_a_folder_holding_other_files(tmp_path: Path, frame: pd.DataFrame) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("keep me")

    with pytest.raises(UsageError, match="holds other files"):
        save_model(trained(frame), tmp_path / "work", sample_input=frame.drop(columns="churned"))
    assert (tmp_path / "work" / "notes.txt").read_text() == "keep me"


def test_save_replaces_an_existing_package(tmp_path: Path, frame: pd.DataFrame) -> None:
    save_churn_model(tmp_path / "pkg", frame, kind="weak")
    save_churn_model(tmp_path / "pkg", frame, kind="good")

    package = ModelPackage.read(tmp_path / "pkg")
    assert "LogisticRegression" in (tmp_path / "pkg" / "model.skops").read_bytes().decode("latin-1")
    assert package.flavor == "sklearn"
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]  # no staging left behind


def test_lineage_records_training_data_and_stage_environment(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = tmp_path / "train.csv"
    frame.to_csv(train, index=False)
    monkeypatch.setenv("MLCD_RUN_ID", "r" * 32)
    monkeypatch.setenv("MLCD_STAGE", "train")

    save_churn_model(tmp_path / "pkg", frame, training_data=[train])

    package = ModelPackage.read(tmp_path / "pkg")
    assert package.lineage["run_id"] == "r" * 32
    assert package.lineage["stage"] == "train"
    assert package.training_digests() == {content_digest(train).hex}


def test_package_digest_equals_the_object_store_digest(tmp_path: Path, frame: pd.DataFrame) -> None:
    from mlcd.objects import LocalObjectStore

    save_churn_model(tmp_path / "pkg", frame)
    stored = LocalObjectStore(tmp_path / "objects").put_dir(tmp_path / "pkg")

    assert package_digest(ModelPackage.read(tmp_path / "pkg")) == stored


def test_numpy_sample_gives_positional_signature(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).random((50, 3))
    model = LinearRegression().fit(X, X.sum(axis=1))
    save_model(model, tmp_path / "pkg", sample_input=X)

    loaded = load_model(tmp_path / "pkg")
    assert loaded.signature.columns == ["x0", "x1", "x2"]
    assert loaded.signature.input_type == "ndarray"
    assert loaded.classes is None
    assert loaded.predict_proba(X[:2]) is None
    assert np.allclose(loaded.predict(X[:5]), model.predict(X[:5]))


def test_signature_of_dates_bools_and_wide_text_columns(tmp_path: Path) -> None:
    sample = pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=1500, freq="h"),
            "flag": [True, False] * 750,
            "id": [f"user-{i}" for i in range(1500)],
            "x": np.arange(1500.0),
        }
    )
    save_model(Doubler(), tmp_path / "pkg", sample_input=sample, trusted=True)

    columns = {c.name: c for c in ModelPackage.read(tmp_path / "pkg").signature.inputs}
    assert (columns["when"].kind, columns["when"].categories) == ("categorical", None)
    assert columns["flag"].categories == (False, True)
    assert columns["id"].categories is None  # more than 1,000 distinct values
    assert (columns["x"].min, columns["x"].max) == (0.0, 1499.0)
