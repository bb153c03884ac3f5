"""``warm_start:`` stages continue training from the champion, and the new version names its parent.

A real project and the real ``mlcd run``: a LightGBM stage passes the champion's ``model.txt``
to ``init_model`` and an SGD stage calls ``partial_fit`` on the champion's estimator. The first
run has no champion (fresh fits); once v1 is champion the stages are stale (the champion they
start from is one of their inputs), continue from it, and v2's lineage records v1 as parent.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlcd.registry import ModelPackage, fetch, get_version, set_alias
from mlcd.store import Store
from tests.pipeline.conftest import Cli, outcomes, run_json

CONFIG = """
stages:
  boost:
    cmd: python boost.py
    deps: [boost.py, common.py]
    params: [rounds]
    warm_start: {model: boost}
    outs: [models/boost, out/boost.json]
    env: {OMP_NUM_THREADS: "1"}
  sgd:
    cmd: python sgd.py
    deps: [sgd.py, common.py]
    warm_start: {model: sgd, alias: champion}
    outs: [models/sgd, out/sgd.json]
models:
  boost: {path: models/boost, stage: boost}
  sgd: {path: models/sgd, stage: sgd}
"""

COMMON = """
import numpy as np, pandas as pd
def data(seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    return X, (X["a"] + 0.5 * X["b"] > 0).astype(int)
"""

BOOST = """
import json, os, pathlib, yaml
import lightgbm as lgb
import mlcd
from common import data
X, y = data()
parent = mlcd.champion("boost")
rounds = yaml.safe_load(open("params.yaml"))["rounds"]
init = None if parent is None else str(parent / "model.txt")
model = lgb.LGBMClassifier(n_estimators=rounds, verbose=-1).fit(X, y, init_model=init)
mlcd.save_model(model, "models/boost", sample_input=X.head(5))
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/boost.json").write_text(json.dumps({
    "warm": parent is not None, "trees": model.booster_.num_trees(),
    "env": os.environ.get("MLCD_WARM_START_VERSION"),
}))
"""

SGD = """
import json, pathlib
from sklearn.linear_model import SGDClassifier
import mlcd
from common import data
X, y = data(1)
parent = mlcd.champion("sgd")
if parent is None:
    model = SGDClassifier(random_state=0)
    model.partial_fit(X, y, classes=[0, 1])
    seen = 1
else:
    model = mlcd.load_model(parent).raw      # the champion's estimator, verified
    model.partial_fit(X, y)                  # one more pass over the new data
    seen = int(model.t_ // len(X)) + 0
mlcd.save_model(model, "models/sgd", sample_input=X.head(5))
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/sgd.json").write_text(json.dumps({"warm": parent is not None, "t": model.t_}))
"""


def _out(root: Path, name: str) -> dict[str, object]:
    return dict(json.loads((root / "out" / f"{name}.json").read_text()))


def _lineage(store: Store, root: Path, name: str, version: int) -> dict[str, object]:
    from mlcd.objects import open_object_store

    objects = open_object_store(str(root / ".mlcd" / "objects"), root=root)
    folder = fetch(objects, get_version(store, name, version), root / "cache")
    return ModelPackage.read(folder).lineage


def test_stages_continue_from_the_champion_and_record_their_parent(
    make_project: Cli, mlcd: Cli
) -> None:
    root = make_project(
        CONFIG,
        {"common.py": COMMON, "boost.py": BOOST, "sgd.py": SGD, "params.yaml": "rounds: 20\n"},
    )
    assert mlcd(root, "init").returncode == 0
    first = run_json(mlcd, root)
    assert outcomes(first) == {"boost": "ran", "sgd": "ran"}
    assert _out(root, "boost") == {"warm": False, "trees": 20, "env": ""}
    assert _out(root, "sgd")["warm"] is False
    pointer = json.loads((root / ".mlcd" / "warm_start" / "boost@champion.json").read_text())
    assert pointer["version"] is None
    store = Store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    try:
        assert "parent" not in _lineage(store, root, "boost", 1)
        t_first = float(_out(root, "sgd")["t"])  # type: ignore[arg-type]

        # Nothing moved: nothing runs.
        assert set(outcomes(run_json(mlcd, root)).values()) == {"skipped"}

        # v1 becomes champion: both stages are stale and continue from it.
        set_alias(store, "boost", "champion", 1)
        set_alias(store, "sgd", "champion", 1)
        status = mlcd(root, "status", "--json")
        assert status.returncode == 0, status.stderr
        stale = {s["stage"]: s for s in json.loads(status.stdout)["stages"]}
        assert stale["boost"]["status"] == stale["sgd"]["status"] == "stale", stale
        assert "warm_start/boost@champion.json" in json.dumps(stale["boost"]["reasons"])
        second = run_json(mlcd, root)
        assert outcomes(second) == {"boost": "ran", "sgd": "ran"}
        assert _out(root, "boost") == {"warm": True, "trees": 40, "env": "1"}
        assert _out(root, "sgd")["warm"] is True
        assert float(_out(root, "sgd")["t"]) > t_first  # type: ignore[arg-type]
        for name in ("boost", "sgd"):
            parent = _lineage(store, root, name, 2)["parent"]
            assert isinstance(parent, dict)
            assert parent["model"] == name and parent["version"] == 1
            assert parent["digest"] == get_version(store, name, 1).digest

        # Outside a stage, mlcd.champion resolves the alias in the project's store.
        check = root / "check.py"
        check.write_text(
            "import mlcd\nprint(mlcd.champion('boost').name, mlcd.champion('nobody'))\n",
            encoding="utf-8",
        )
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, str(check)], cwd=root, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [get_version(store, "boost", 1).digest.split(".")[0], "None"]
    finally:
        store.dispose()
