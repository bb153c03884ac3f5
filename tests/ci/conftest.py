"""A small real project for ``mlcd ci``: generated data, a scikit-learn model, gates, git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

CONFIG = """
stages:
  data:
    cmd: python src/data.py
    deps: [src/data.py]
    params: [seed, data]
    outs: [data/train.csv, data/test.csv]
  train:
    cmd: python src/train.py
    deps: [src/train.py, data/train.csv]
    params: [seed, train]
    outs: [models/clf]
    metrics: [metrics/train.json]
models:
  clf:
    path: models/clf
    stage: train
    task: classification
    target: y
    eval_data: data/test.csv
gates:
  champion:
    - roc_auc >= 0.55
    - roc_auc >= champion.roc_auc - 0.02
"""

PARAMS = """
seed: 0
data:
  rows: 3000
train:
  C: 1.0
  features: [x0, x1, x2, x3]
"""

DATA = """
import os

import numpy as np
import pandas as pd
import yaml

os.makedirs("data", exist_ok=True)
p = yaml.safe_load(open("params.yaml"))
rng = np.random.default_rng(p["seed"])
n = p["data"]["rows"]
x = rng.normal(size=(n, 4))
logit = 1.6 * x[:, 0] - 1.2 * x[:, 1] + 0.5 * x[:, 2]
y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
frame = pd.DataFrame(x, columns=["x0", "x1", "x2", "x3"]).assign(y=y)
cut = int(n * 0.7)
frame.iloc[:cut].to_csv("data/train.csv", index=False)
frame.iloc[cut:].to_csv("data/test.csv", index=False)
"""

TRAIN = """
import json
import os

import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression

import mlcd

p = yaml.safe_load(open("params.yaml"))["train"]
train = pd.read_csv("data/train.csv")
X = train[p["features"]]
model = LogisticRegression(C=p["C"]).fit(X, train["y"])
mlcd.save_model(model, "models/clf", sample_input=X.head(200), training_data=["data/train.csv"])
os.makedirs("metrics", exist_ok=True)
with open("metrics/train.json", "w") as handle:
    json.dump({"train_accuracy": float(model.score(X, train["y"]))}, handle)
"""

Cli = Callable[..., subprocess.CompletedProcess[str]]


def stage_env() -> dict[str, str]:
    """PATH with this interpreter's folder first, so stage commands find ``python``."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLCD_ACTOR": "ci-test",
    }


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fixed identity; returns stdout."""
    result = subprocess.run(
        ["git", "-c", "user.name=mlcd test", "-c", "user.email=test@mlcd.invalid", *args],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def write(root: Path, files: dict[str, str]) -> None:
    """Write dedented text files below ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def set_params(root: Path, **train: Any) -> None:
    """Change keys of ``train:`` in params.yaml."""
    import yaml

    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train"].update(train)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def commit_all(root: Path, message: str) -> None:
    """Commit everything git does not ignore (stage outs are ignored by mlcd run)."""
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def make_project(root: Path, extra_config: str = "") -> Path:
    """Write the project in ``root`` and commit it once in a new git repository (branch main)."""
    write(
        root,
        {
            "mlcd.yaml": CONFIG + textwrap.dedent(extra_config),
            "params.yaml": PARAMS,
            "src/data.py": DATA,
            "src/train.py": TRAIN,
            ".gitignore": ".mlcd/\n",
        },
    )
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "project")
    return root


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A git repository (branch main) holding the project, committed once."""

    def make(name: str = "repo", extra_config: str = "") -> Path:
        return make_project(tmp_path / name, extra_config)

    return make


@pytest.fixture
def mlcd() -> Cli:
    """Run the real CLI in a project: ``mlcd(root, "ci", "--json")``."""

    def call(
        root: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), cwd=root, env={**stage_env(), **(env or {})})

    return call


def ci_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``mlcd ci --json`` document (printed whatever the exit code)."""
    assert result.stdout.strip(), result.stderr
    return dict(json.loads(result.stdout))
