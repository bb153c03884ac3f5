"""``mlcd import mlflow`` against a real MLflow SQLite store built by MLflow's own client.

The store (two experiments, ~50 runs with nested runs and metric histories, artifacts, three
registered models with aliases) is built once per module in a subprocess running this file
(``python test_import_mlflow.py build ROOT``), which also dumps what the MLflow client reads
back from it: the import is compared field by field against that dump. Each import runs the
real CLI in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

#: One worker runs the module: the store and the imported project are module fixtures, and the
#: tests that first use them (each recorded at the full build) went to both xdist workers,
#: which built the same store twice.
pytestmark = pytest.mark.xdist_group("import_mlflow")

N_PARENTS = 16


# ---------------------------------------------------------------------- the MLflow world
def build(root: Path) -> None:
    """Make the MLflow store under ``root`` and dump what MLflow's client reads from it."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeRegressor

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    alpha = client.create_experiment("alpha", artifact_location=str(root / "art-alpha"))
    beta = client.create_experiment("beta", artifact_location=str(root / "art-beta"))
    t0 = 1_700_000_000_000
    notes = root / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "readme.txt").write_text("hello from mlflow\n")
    (notes / "sub" / "data.csv").write_text("a,b\n1,2\n")

    def history(run_id: str, seed: int, keys: int, steps: int, start: int) -> None:
        metrics = [
            Metric(f"loss_{k}", round(1.0 / (s + 1 + seed + k), 6), start + s * 10, s)
            for k in range(keys)
            for s in range(steps)
        ]
        client.log_batch(run_id, metrics=metrics)

    for i in range(N_PARENTS):
        experiment = alpha if i % 2 == 0 else beta
        start = t0 + i * 60_000
        parent = client.create_run(
            experiment, run_name=f"sweep-{i}", start_time=start, tags={"team": "vision"}
        )
        pid = parent.info.run_id
        client.log_batch(
            pid,
            params=[Param("lr", str(0.01 * (i + 1))), Param("model", "cnn" if i % 3 else "mlp")],
            tags=[RunTag("mlflow.source.git.commit", f"{i:040x}"), RunTag("note", f"trial {i}")],
        )
        history(pid, i, keys=3, steps=25, start=start)
        if i == 3:
            client.log_artifacts(pid, str(notes), artifact_path="docs")
        if i == 5:  # a NaN point: mlcd keeps finite numbers only
            client.log_metric(pid, "unstable", float("nan"), timestamp=start, step=0)
            client.log_metric(pid, "unstable", 2.5, timestamp=start + 1, step=1)
        for j in range(2):
            child = client.create_run(
                experiment,
                run_name=f"fold-{i}-{j}",
                start_time=start + 100 + j,
                tags={"mlflow.parentRunId": pid, "fold": str(j)},
            )
            client.log_param(child.info.run_id, "fold", str(j))
            history(child.info.run_id, i + j, keys=2, steps=10, start=start + 200)
            if i == 0 and j == 0:  # a grandchild
                grand = client.create_run(
                    experiment,
                    run_name="grandchild",
                    start_time=start + 150,
                    tags={"mlflow.parentRunId": child.info.run_id},
                )
                client.log_metric(grand.info.run_id, "depth", 2.0, timestamp=start, step=0)
                client.set_terminated(grand.info.run_id, end_time=start + 160)
            client.set_terminated(child.info.run_id, end_time=start + 5000 + j)
        status = {4: "FAILED", 6: "KILLED"}.get(i, "FINISHED")
        if i != 7:  # run 7 stays RUNNING
            client.set_terminated(pid, status=status, end_time=start + 30_000)

    # three registered models: a skops sklearn classifier (two versions, aliases), a
    # cloudpickled regressor (kept untrusted unless --trust), a custom pyfunc (refused)
    mlflow.set_tracking_uri(uri)
    x, y = load_iris(return_X_y=True, as_frame=True)
    classifier = LogisticRegression(max_iter=300).fit(x, y)
    regressor = DecisionTreeRegressor(max_depth=3, random_state=0).fit(x, x["petal width (cm)"])

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input * 2

    mlflow.set_experiment(experiment_id=alpha)
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_param("max_iter", 300)
        mlflow.sklearn.log_model(
            classifier,
            name="clf",
            input_example=x.head(20),
            registered_model_name="iris-clf",
            pip_requirements=["scikit-learn"],
        )
        mlflow.sklearn.log_model(
            LogisticRegression(max_iter=300, C=0.5).fit(x, y),
            name="clf2",
            input_example=x.head(20),
            registered_model_name="iris-clf",
            pip_requirements=["scikit-learn"],
        )
        mlflow.sklearn.log_model(
            regressor,
            name="reg",
            serialization_format="cloudpickle",
            input_example=x.head(5),
            registered_model_name="iris-reg",
            pip_requirements=["scikit-learn"],
        )
        mlflow.pyfunc.log_model(
            name="doubler",
            python_model=Doubler(),
            registered_model_name="doubler",
            pip_requirements=["mlflow"],
        )
    client.set_registered_model_alias("iris-clf", "champion", "1")
    client.set_registered_model_alias("iris-clf", "challenger", "2")
    client.set_registered_model_alias("iris-reg", "prod", "1")
    client.update_registered_model("iris-clf", description="iris species classifier")
    client.set_registered_model_tag("iris-clf", "owner", "ml-team")
    client.set_model_version_tag("iris-clf", "1", "validated", "yes")
    client.update_model_version("iris-clf", "2", description="smaller C")

    # MLflow's Tracking Quickstart (see tests/compat), run on the real mlflow into this store
    import runpy

    from tests.compat.test_mlflow_compat import QUICKSTART

    (root / "quickstart.py").write_text(QUICKSTART.format(import_line="import mlflow"))
    quickstart = runpy.run_path(str(root / "quickstart.py"), run_name="__main__")
    mlflow.sklearn.autolog(disable=True)
    quickstart_experiment = client.get_experiment_by_name("MLflow Quickstart").experiment_id

    # what the MLflow client reads back: the reference the import is compared with
    runs: dict[str, Any] = {}
    names = {alpha: "alpha", beta: "beta", quickstart_experiment: "MLflow Quickstart"}
    for found in client.search_runs(list(names), max_results=1000):
        info, data = found.info, found.data
        runs[info.run_id] = {
            "name": info.run_name,
            "experiment": names[info.experiment_id],
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "user": info.user_id,
            "params": data.params,
            "tags": data.tags,
            "metrics": {
                key: [
                    [m.value, m.step, m.timestamp]
                    for m in client.get_metric_history(info.run_id, key)
                ]
                for key in data.metrics
            },
            "artifacts": _artifact_files(Path(info.artifact_uri)),
        }
    models = {}
    for model in client.search_registered_models():
        models[model.name] = {
            "description": model.description,
            "tags": model.tags,
            "aliases": {a: int(v) for a, v in model.aliases.items()},
            "versions": {
                str(v.version): {"tags": v.tags, "description": v.description, "run_id": v.run_id}
                for v in client.search_model_versions(f"name = '{model.name}'")
            },
        }
    sample = x.sample(30, random_state=1)
    predictions = mlflow.pyfunc.load_model("models:/iris-clf@champion").predict(sample)
    expected = {
        "uri": uri,
        "runs": runs,
        "models": models,
        "train_run": run.info.run_id,
        "quickstart": {
            "model_uri": quickstart["model_info"].model_uri,
            "predictions": [int(p) for p in quickstart["predictions"]],
        },
        "sample": sample.to_dict(orient="list"),
        "predictions": np.asarray(predictions).tolist(),
    }
    (root / "expected.json").write_text(json.dumps(expected))


def _artifact_files(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The MLflow store and what MLflow's client reads from it."""
    root = tmp_path_factory.mktemp("mlflow-world")
    result = subprocess.run(
        [sys.executable, __file__, "build", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # MLflow otherwise loads each logged model in a subprocess to list its imports
            "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "0",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, json.loads((root / "expected.json").read_text())


def _project(base: Path, name: str) -> Path:
    result = run_cli(["init", name], cwd=base)
    assert result.returncode == 0, result.stderr
    return base / name


def _import(project: Path, uri: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(["import", "mlflow", "--tracking-uri", uri, *args, "--json"], project, env)


@pytest.fixture(scope="module")
def imported(
    world: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One project taken through: an import killed half-way, the re-run, and one more run."""
    _, expected = world
    project = _project(tmp_path_factory.mktemp("mlcd"), "proj")
    crash = {"MLCD_IMPORT_CRASH_AFTER": "20", "MLCD_IMPORT_BATCH_RUNS": "5"}
    crashed = _import(project, expected["uri"], env=crash)
    after_crash = _db_state(project)
    full = _import(project, expected["uri"], "--models")
    assert full.returncode == 0, full.stderr
    again = _import(project, expected["uri"], "--models")
    assert again.returncode == 0, again.stderr
    return {
        "project": project,
        "crashed": crashed,
        "after_crash": after_crash,
        "full": json.loads(full.stdout),
        "again": json.loads(again.stdout),
        "state": _db_state(project),
    }


@contextlib.contextmanager
def _db(project: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(project / ".mlcd" / "mlcd.db")
    try:
        yield conn
    finally:
        conn.close()


def _db_state(project: Path) -> dict[str, Any]:
    """Counts a duplicate would show: runs, points per run, versions, alias events."""
    with _db(project) as conn:
        return {
            "runs": conn.execute("SELECT count(*) FROM runs").fetchone()[0],
            "points": dict(
                conn.execute("SELECT run_id, count(*) FROM run_metrics GROUP BY run_id").fetchall()
            ),
            "params": conn.execute("SELECT count(*) FROM run_params").fetchone()[0],
            "artifacts": conn.execute("SELECT count(*) FROM run_artifacts").fetchone()[0],
            "versions": conn.execute("SELECT count(*) FROM model_versions").fetchone()[0],
            "alias_events": conn.execute(
                "SELECT count(*) FROM events WHERE kind = 'alias.set'"
            ).fetchone()[0],
        }


def _finite_points(expected_run: dict[str, Any]) -> int:
    return sum(
        1 for points in expected_run["metrics"].values() for v, _, _ in points if not math.isnan(v)
    )


# ---------------------------------------------------------------------- the tests
def test_import_killed_half_way_keeps_only_whole_runs(imported: dict[str, Any], world: Any) -> None:
    _, expected = world
    assert imported["crashed"].returncode == -signal.SIGKILL
    state = imported["after_crash"]
    assert 0 < state["runs"] < len(expected["runs"])  # some batches committed, not all
    for run_id, count in state["points"].items():  # each committed run has all its points
        assert count == _finite_points(expected["runs"][run_id])


def test_rerun_after_crash_completes_without_duplicates(
    imported: dict[str, Any], world: Any
) -> None:
    _, expected = world
    full = imported["full"]["runs"]
    assert full["found"] == len(expected["runs"])
    assert full["imported"] + full["already_imported"] == len(expected["runs"])
    assert full["already_imported"] == imported["after_crash"]["runs"]
    state = imported["state"]
    assert state["runs"] == len(expected["runs"])
    assert state["points"] == {
        run_id: _finite_points(run) for run_id, run in expected["runs"].items() if run["metrics"]
    }


def test_reimport_adds_nothing(imported: dict[str, Any], world: Any) -> None:
    _, expected = world
    again = imported["again"]
    assert again["runs"]["imported"] == 0
    assert again["runs"]["already_imported"] == len(expected["runs"])
    assert all(m["imported"] == [] for m in again["models"])
    before = _db_state(imported["project"])
    assert before == imported["state"]


def test_every_param_tag_and_metric_point_matches_mlflow(
    imported: dict[str, Any], world: Any
) -> None:
    from mlcd.store import Store
    from mlcd.store import runs as repo

    _, expected = world
    store = Store(f"sqlite:///{imported['project'] / '.mlcd' / 'mlcd.db'}")
    try:
        with store.read() as conn:
            for run_id, want in expected["runs"].items():
                row = repo.get_run(conn, run_id)
                assert row["kind"] == "mlflow"
                assert row["name"] == want["name"]
                assert repo.params_of(conn, run_id) == want["params"]
                tags = repo.tags_of(conn, run_id)
                assert {k: tags.get(k) for k in want["tags"]} == want["tags"]
                assert tags["mlflow.run_id"] == run_id
                assert tags["mlflow.experiment_name"] == want["experiment"]
                history = repo.metric_history(conn, run_id)
                got = sorted((p.key, p.value, p.step, round(p.timestamp * 1000)) for p in history)
                wanted = sorted(
                    (key, value, step, stamp)
                    for key, points in want["metrics"].items()
                    for value, step, stamp in points
                    if not math.isnan(value)
                )
                assert got == wanted, run_id
                latest = repo.latest_metrics_of(conn, run_id)
                for key, points in want["metrics"].items():
                    finite = [p for p in points if not math.isnan(p[0])]
                    if finite:
                        top = max(finite, key=lambda p: (p[1], p[2]))
                        assert latest[key] == top[0]
    finally:
        store.dispose()


def test_status_times_user_commit_and_parents_match_mlflow(
    imported: dict[str, Any], world: Any
) -> None:
    _, expected = world
    status = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}
    with _db(imported["project"]) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                'SELECT id, status, started_at, ended_at, "user", git_commit, parent_id FROM runs'
            )
        }
    for run_id, want in expected["runs"].items():
        got_status, started, ended, user, commit, parent = rows[run_id]
        assert got_status == status[want["status"]]
        assert round(started * 1000) == want["start_time"]
        if want["status"] == "RUNNING":
            assert ended is None
        else:
            assert round(ended * 1000) == want["end_time"]
        assert user == want["user"]
        assert commit == want["tags"].get("mlflow.source.git.commit")
        assert parent == want["tags"].get("mlflow.parentRunId")
    assert (
        sum(1 for r in rows.values() if r[5] is not None) > N_PARENTS
    )  # children and one grandchild


def test_artifacts_are_stored_by_digest_with_their_bytes(
    imported: dict[str, Any], world: Any
) -> None:
    from mlcd.digest import Digest
    from mlcd.objects import open_object_store

    _, expected = world
    project = imported["project"]
    objects = open_object_store(".mlcd/objects", root=project)
    with _db(project) as conn:
        for run_id, want in expected["runs"].items():
            stored = dict(
                conn.execute(
                    "SELECT path, digest FROM run_artifacts WHERE run_id = ?", (run_id,)
                ).fetchall()
            )
            for path, sha in want["artifacts"].items():
                data = objects.get_bytes(Digest.parse(stored[path]))
                assert hashlib.sha256(data).hexdigest() == sha
    train = expected["train_run"]
    with _db(project) as conn:
        paths = {
            p for (p,) in conn.execute("SELECT path FROM run_artifacts WHERE run_id = ?", (train,))
        }
    # MLflow 3 logged models' files are recorded on the run that logged them
    assert {"clf/MLmodel", "clf/model.skops", "reg/MLmodel", "doubler/MLmodel"} <= paths


def test_registered_models_versions_aliases_tags_and_descriptions(
    imported: dict[str, Any], world: Any
) -> None:
    from mlcd.registry import describe
    from mlcd.store import Store

    _, expected = world
    store = Store(f"sqlite:///{imported['project'] / '.mlcd' / 'mlcd.db'}")
    try:
        for name in ("iris-clf", "iris-reg"):
            want = expected["models"][name]
            got = describe(store, name)
            assert got["description"] == want["description"]
            by_mlflow = {v["tags"]["mlflow.version"]: v for v in got["versions"]}
            assert set(by_mlflow) == set(want["versions"])
            for number, version in want["versions"].items():
                tags = by_mlflow[number]["tags"]
                assert {k: tags.get(k) for k in version["tags"]} == version["tags"]
                assert {k: tags.get(k) for k in want["tags"]} == want["tags"]
                assert tags.get("mlflow.description") == version["description"]
                assert by_mlflow[number]["run_id"] == version["run_id"]
            for alias, number in want["aliases"].items():
                assert got["aliases"][alias] == by_mlflow[str(number)]["version"]
    finally:
        store.dispose()
    refused = {m["name"]: m for m in imported["full"]["models"]}["doubler"]["refused"]
    assert "python_function" in refused[0]["reason"] or "not converted" in refused[0]["reason"]


def test_imported_sklearn_model_predicts_like_mlflow(imported: dict[str, Any], world: Any) -> None:
    import numpy as np
    import pandas as pd

    from mlcd.objects import open_object_store
    from mlcd.registry import load_model
    from mlcd.store import Store

    _, expected = world
    project = imported["project"]
    store = Store(f"sqlite:///{project / '.mlcd' / 'mlcd.db'}")
    try:
        model = load_model(
            "iris-clf@champion",
            store=store,
            objects=open_object_store(".mlcd/objects", root=project),
            cache_dir=project / "cache",
        )
        predictions = model.predict(pd.DataFrame(expected["sample"]))
        assert model.flavor == "sklearn"
        assert np.array_equal(predictions, np.asarray(expected["predictions"]))
    finally:
        store.dispose()


def test_trust_converts_pickles_and_the_client_read_path_gives_the_same_runs(
    imported: dict[str, Any], world: Any, tmp_path: Path
) -> None:
    """One more import, through the slow paths: MLflow's per-key metric history calls and a
    reader thread instead of a process; with --trust the pickled regressor becomes skops."""
    from mlcd.errors import UnsafeModel
    from mlcd.objects import open_object_store
    from mlcd.registry import load_model
    from mlcd.store import Store

    _, expected = world
    untrusted = {m["name"]: m for m in imported["full"]["models"]}["iris-reg"]["imported"]
    assert untrusted[0]["needs_trust"] is True
    project = _project(tmp_path, "other")
    result = _import(
        project,
        expected["uri"],
        "-e",
        "beta",
        "--model",
        "iris-reg",
        "--trust",
        env={"MLCD_MLFLOW_READ": "client", "MLCD_IMPORT_READER": "thread"},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    beta = {k for k, v in expected["runs"].items() if v["experiment"] == "beta"}
    assert summary["runs"]["imported"] == len(beta)
    query = "SELECT run_id, key, value, step, timestamp FROM run_metrics ORDER BY 1, 2, 4, 5"
    with _db(project) as fresh, _db(imported["project"]) as reference:
        got = fresh.execute(query).fetchall()
        want = [r for r in reference.execute(query).fetchall() if r[0] in beta]
    assert got == want

    [outcome] = summary["models"]
    assert outcome["imported"][0]["needs_trust"] is False
    sample = pd_frame(expected["sample"])
    for where, trusted_needed in ((imported["project"], True), (project, False)):
        store = Store(f"sqlite:///{where / '.mlcd' / 'mlcd.db'}")
        try:
            context = {
                "store": store,
                "objects": open_object_store(".mlcd/objects", root=where),
                "cache_dir": where / "cache",
            }
            if trusted_needed:
                with pytest.raises(UnsafeModel, match="pickle"):
                    load_model("iris-reg@prod", **context)
            model = load_model("iris-reg@prod", trusted=trusted_needed, **context)
            assert model.predict(sample).shape == (30,)
        finally:
            store.dispose()


def pd_frame(columns: dict[str, list[Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(columns)


def test_mlflow_quickstart_ran_on_real_mlflow_and_its_runs_import(
    imported: dict[str, Any], world: Any
) -> None:
    """The quickstart script tests/compat runs on mlcd is MLflow code: here it ran on the real
    mlflow (in the store's builder), and its runs came over with the rest."""
    _, expected = world
    quick = {k: v for k, v in expected["runs"].items() if v["experiment"] == "MLflow Quickstart"}
    assert len(quick) == 2  # the autologged fit and the manual run
    assert expected["quickstart"]["model_uri"].startswith("models:/")
    assert len(expected["quickstart"]["predictions"]) == 30
    with _db(imported["project"]) as conn:
        tags = dict(
            conn.execute(
                "SELECT run_id, value FROM run_tags WHERE key = 'Training Info'"
            ).fetchall()
        )
    [(run_id, value)] = tags.items()
    assert run_id in quick and value == "Basic LR model for iris data"


def test_unknown_experiment_is_refused_naming_it(world: Any, tmp_path: Path) -> None:
    _, expected = world
    project = _project(tmp_path, "p")
    result = _import(project, expected["uri"], "--experiment", "gamma")
    assert result.returncode == 2
    assert "no experiment 'gamma'" in result.stderr
    assert "alpha" in result.stderr  # the hint lists what exists


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "build":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    build(Path(sys.argv[2]))
