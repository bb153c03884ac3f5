"""Issue 19, first hour on a real project: registering a plain model file, the run in the
lineage of a manual run's model, and no library warning flood at scoring time."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli


def _forest_on_array(n: int = 600, seed: int = 0) -> tuple[object, pd.DataFrame]:
    """A RandomForest fitted on a numpy array (no feature names), and its data as a table."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"f{i}": rng.standard_normal(n) for i in range(4)})
    frame["label"] = (frame.f0 + 0.5 * frame.f1 + rng.normal(0, 0.5, n) > 0).astype(int)
    model = RandomForestClassifier(n_estimators=10, random_state=seed)
    model.fit(frame.drop(columns="label").to_numpy(), frame["label"].to_numpy())
    return model, frame


def test_register_a_pickle_file_needs_trust_and_stores_it_as_skops(project: Path) -> None:
    model, frame = _forest_on_array()
    with open(project / "model.pkl", "wb") as out:
        pickle.dump(model, out)
    frame.drop(columns="label").head(50).to_csv(project / "sample.csv", index=False)

    refused = run_cli(["models", "register", "so", "model.pkl", "--flavor", "sklearn"], project)
    assert refused.returncode == 2, refused.stderr
    assert "--trust" in refused.stderr

    done = run_cli(
        ["models", "register", "so", "model.pkl", "--flavor", "sklearn", "--trust",
         "--sample", "sample.csv", "--json"],
        project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    shown = run_cli(["models", "show", "so/1", "--json"], project)
    package = json.loads(shown.stdout)["package"]
    assert package["options"]["format"] == "skops"
    assert [c["name"] for c in package["signature"]["inputs"]] == ["f0", "f1", "f2", "f3"]


def test_a_sample_holding_the_label_is_cut_to_what_the_model_was_fitted_on(project: Path) -> None:
    # guards against the label becoming a model input when --sample is the training table
    model, frame = _forest_on_array()
    with open(project / "model.pkl", "wb") as out:
        pickle.dump(model, out)
    frame.head(50).to_csv(project / "train.csv", index=False)  # label included
    frame.head(50).assign(extra=1.0).to_csv(project / "wide.csv", index=False)
    register = ["models", "register", "so", "model.pkl", "--flavor", "sklearn", "--trust"]

    unsaid = run_cli([*register, "--sample", "train.csv"], project)
    assert unsaid.returncode == 2
    assert "5 columns" in unsaid.stderr and "4 features" in unsaid.stderr
    assert "--target" in unsaid.stderr

    done = run_cli([*register, "--sample", "train.csv", "--target", "label", "--json"], project)
    assert done.returncode == 0, done.stderr
    assert "dropped 'label'" in done.stderr
    shown = json.loads(run_cli(["models", "show", "so/1", "--json"], project).stdout)
    assert [c["name"] for c in shown["package"]["signature"]["inputs"]] == ["f0", "f1", "f2", "f3"]

    wide = run_cli([*register, "--sample", "wide.csv", "--target", "label"], project)
    assert wide.returncode == 2 and "5 columns" in wide.stderr


def test_a_sample_is_cut_to_the_feature_names_a_model_was_fitted_with(project: Path) -> None:
    # guards against extra columns (label, ids) of a named-feature model's sample becoming inputs
    from sklearn.linear_model import LogisticRegression

    _, frame = _forest_on_array()
    model = LogisticRegression().fit(frame[["f0", "f1"]], frame["label"])
    with open(project / "model.pkl", "wb") as out:
        pickle.dump(model, out)
    frame.head(50).to_csv(project / "train.csv", index=False)

    done = run_cli(
        ["models", "register", "lr", "model.pkl", "--flavor", "sklearn", "--trust",
         "--sample", "train.csv"],
        project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dropped" in done.stderr and "'label'" in done.stderr
    shown = json.loads(run_cli(["models", "show", "lr/1", "--json"], project).stdout)
    assert [c["name"] for c in shown["package"]["signature"]["inputs"]] == ["f0", "f1"]


def test_register_a_file_without_flavor_is_a_usage_error(project: Path) -> None:
    (project / "model.pkl").write_bytes(b"not a model")
    result = run_cli(["models", "register", "so", "model.pkl"], project)
    assert result.returncode == 2
    assert "--flavor" in result.stderr


def test_save_model_inside_start_run_records_the_run(project: Path) -> None:
    script = (
        "import mlcd, numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X = np.random.default_rng(0).standard_normal((40, 2)); y = (X[:, 0] > 0).astype(int)\n"
        "with mlcd.start_run('manual') as run:\n"
        "    mlcd.save_model(LogisticRegression().fit(X, y), 'models/m', sample_input=X)\n"
        "    print(run.id)\n"
    )
    (project / "train.py").write_text(script)
    import subprocess
    import sys

    ran = subprocess.run(
        [sys.executable, "train.py"], cwd=project, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.strip()
    import yaml

    lineage = yaml.safe_load((project / "models/m/model.yaml").read_text())["lineage"]
    assert lineage["run_id"] == run_id
    registered = run_cli(["models", "register", "m", "models/m"], project)
    assert registered.returncode == 0, registered.stderr
    shown = run_cli(["models", "show", "m/1"], project)
    assert f"run {run_id}" in shown.stdout


def test_log_model_saves_registers_and_links_the_active_run(project: Path) -> None:
    script = (
        "import json, mlcd, numpy as np, pandas as pd\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X = pd.DataFrame(np.random.default_rng(0).standard_normal((40, 2)), columns=['a', 'b'])\n"
        "y = (X.a > 0).astype(int)\n"
        "with mlcd.start_run('nb') as run:\n"
        "    version = mlcd.log_model(LogisticRegression().fit(X, y), 'clf', sample_input=X)\n"
        "    print(json.dumps({'run': run.id, 'version': version.version,"
        " 'run_of_version': version.run_id}))\n"
    )
    (project / "nb.py").write_text(script)
    import subprocess
    import sys

    ran = subprocess.run(
        [sys.executable, "nb.py"], cwd=project, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["version"] == 1
    assert out["run_of_version"] == out["run"]
    listed = json.loads(run_cli(["models", "show", "clf", "--json"], project).stdout)
    assert listed["versions"][0]["run_id"] == out["run"]


def test_log_model_is_public_api() -> None:
    import mlcd

    assert "log_model" in mlcd.__all__
    assert callable(mlcd.log_model)


@pytest.mark.slow
def test_a_model_fitted_on_an_array_is_scored_without_warnings(project: Path) -> None:
    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model

    model, frame = _forest_on_array(900)
    train, test = frame.iloc[:600], frame.iloc[600:].reset_index(drop=True)
    package = save_model(model, project / "models" / "rf", sample_input=train.drop(columns="label"))
    assert package.signature.input_type == "ndarray"
    (project / "data").mkdir()
    test.to_parquet(project / "data" / "test.parquet")
    train.drop(columns="label").to_parquet(project / "data" / "ref.parquet")
    test.drop(columns="label").to_parquet(project / "data" / "cur.parquet")
    with open(project / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(
            "models:\n  rf:\n    path: models/rf\n    target: label\n"
            "    eval_data: data/test.parquet\n"
            "gates:\n  champion:\n    - roc_auc >= 0.6\n"
        )
    with Project.open(project) as opened:
        register_from_path(opened.store, opened.objects, "rf", project / "models" / "rf")
    steps = [
        ["evaluate", "rf", "--candidate", "1", "--resamples", "50"],
        ["models", "promote", "rf", "1", "--resamples", "50"],
        ["monitor", "rf", "--reference", "data/ref.parquet", "--current", "data/cur.parquet"],
    ]
    for args in steps:
        result = run_cli(args, project)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "feature names" not in result.stderr, (args, result.stderr)
        assert "Warning" not in result.stderr, (args, result.stderr)


def test_an_old_package_of_an_array_fitted_model_is_fed_arrays(tmp_path: Path) -> None:
    import yaml

    from mlcd.registry import load_model, save_model

    model, frame = _forest_on_array()
    X = frame.drop(columns="label")
    save_model(model, tmp_path / "rf", sample_input=X)
    meta_path = tmp_path / "rf" / "model.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["signature"]["input_type"] = "dataframe"  # as packages were saved before issue 19
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))

    loaded = load_model(tmp_path / "rf")
    # warnings are errors here: "X has feature names" would fail the test
    assert loaded.predict(X.head(20)).shape == (20,)
    assert loaded.predict_proba(X.head(20)).shape == (20, 2)


def test_native_xgboost_and_lightgbm_files_are_read_as_classifiers(tmp_path: Path) -> None:
    import lightgbm
    import xgboost

    from mlcd.registry import load_model, save_model
    from mlcd.registry.model_file import read_model_file

    _, frame = _forest_on_array()
    X, y = frame.drop(columns="label"), frame["label"]
    xgboost.XGBClassifier(n_estimators=5).fit(X, y).save_model(str(tmp_path / "m.json"))
    booster = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y).booster_
    booster.save_model(str(tmp_path / "m.txt"))
    for name, flavor in (("m.json", "xgboost"), ("m.txt", "lightgbm")):
        model = read_model_file(tmp_path / name, flavor)
        save_model(model, tmp_path / flavor, sample_input=X.head(50), flavor=flavor)
        loaded = load_model(tmp_path / flavor)
        assert loaded.task == "classification", flavor
        assert loaded.predict_proba(X.head(5)).shape == (5, 2), flavor
