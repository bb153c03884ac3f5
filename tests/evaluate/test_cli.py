"""`mlcd evaluate` and `mlcd models promote` with gates from mlcd.yaml, as CI runs them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from mlcd.project import Project
from mlcd.registry import register_from_path
from tests.conftest import copy_project, prepared_project, run_cli
from tests.registry.fixtures import churn_frame, save_churn_model, split

CONFIG = """
models:
  churn:
    path: models/good
    task: classification
    target: churned
    eval_data: data/test.parquet
    slices:
      young: {column: age, max: 35}
      plan_a: {column: plan, value: a}
gates:
  champion:
    - roc_auc >= 0.6
    - f1 >= champion.f1 - 0.005
    - roc_auc better than champion at 95%
    - no slice loses more than 0.02 accuracy
    - size_mb <= 50
"""


def _setup(project: Path) -> None:
    with open(project / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(CONFIG)
    train, _test = split(churn_frame(2500), project)
    frame = pd.read_parquet(train)
    for kind in ("good", "weak"):
        save_churn_model(project / "models" / kind, frame, kind=kind, training_data=[train])
    with Project.open(project) as opened:  # registering from the CLI is tested elsewhere
        for kind in ("good", "weak"):
            register_from_path(opened.store, opened.objects, "churn", project / "models" / kind)


@pytest.fixture(scope="module")
def _setup_template(_init_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``mlcd init`` project after ``_setup`` (churn v1 good, v2 weak), made once."""
    return prepared_project(_init_template, tmp_path_factory, "evaluate-cli", _setup)


@pytest.fixture
def set_up(_setup_template: Path, tmp_path: Path) -> Path:
    """A copy, for this test, of the project after ``_setup``."""
    return copy_project(_setup_template, tmp_path)


@pytest.mark.slow
def test_gated_promotion_and_evaluation_from_the_cli(set_up: Path) -> None:
    project = set_up  # churn v1 (good) and v2 (weak) registered (made once, copied)

    first = run_cli(["models", "promote", "churn", "1", "--resamples", "200"], cwd=project)
    assert first.returncode == 0, first.stderr
    assert "unset → 1" in first.stdout

    worse = run_cli(["models", "promote", "churn", "2", "--resamples", "200"], cwd=project)
    assert worse.returncode == 1
    assert "did not pass the gates of 'champion'" in worse.stderr
    assert "f1 >= champion.f1 - 0.005" in worse.stderr

    evaluated = run_cli(
        [
            "evaluate",
            "churn",
            "--candidate",
            "2",
            "--report-dir",
            "out",
            "--resamples",
            "200",
            "--json",
        ],
        cwd=project,
    )
    assert evaluated.returncode == 1
    payload = json.loads(evaluated.stdout)
    assert payload["passed"] is False
    assert payload["champion"]["version"] == 1
    suite = ET.parse(project / "out" / "junit.xml").getroot()
    assert len(suite.findall(".//testcase")) == 5
    assert int(suite.get("failures", "0")) >= 2
    assert (project / "out" / "report.md").read_text().startswith("## ❌ FAILED")

    no_reason = run_cli(["models", "promote", "churn", "2", "--force"], cwd=project)
    assert no_reason.returncode == 2
    assert "needs a reason" in no_reason.stderr

    forced = run_cli(
        ["models", "promote", "churn", "2", "--force", "--reason", "incident 7"], cwd=project
    )
    assert forced.returncode == 0, forced.stderr
    history = json.loads(
        run_cli(["models", "history", "churn", "--alias", "champion", "--json"], cwd=project).stdout
    )
    assert [(e["kind"], e["version"]) for e in history] == [
        ("alias.set", 2),
        ("model.evaluated", 2),
        ("gate.failed", 2),
        ("alias.set", 1),
    ]
    assert history[0]["reason"] == "incident 7"


def test_evaluate_refuses_training_data_and_missing_data(set_up: Path) -> None:
    project = set_up  # churn v1 (good) and v2 (weak) registered (made once, copied)

    on_train = run_cli(
        ["evaluate", "churn", "--candidate", "1", "--data", "data/train.parquet"], cwd=project
    )
    missing = run_cli(["evaluate", "churn", "--candidate", "1", "--data", "nope.csv"], cwd=project)

    assert on_train.returncode == 2
    assert "trained on" in on_train.stderr
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
