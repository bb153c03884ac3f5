"""Issue 19: gates on the candidate run's own metrics, promotion reusing a fresh evaluation,
progress of long steps, and report badges that need no emoji font."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlcd.errors import ConfigError
from mlcd.evaluate import evaluate
from mlcd.evaluate.reports import render_html
from mlcd.project import Project
from mlcd.registry import register_from_path
from tests.conftest import copy_project, prepared_project, run_cli
from tests.registry.fixtures import churn_frame, save_churn_model, split

TRAIN_IN_A_RUN = """
import sys
import mlcd
import pandas as pd
from tests.registry.fixtures import trained
frame = pd.read_parquet("data/train.parquet")
with mlcd.start_run("train"):
    mlcd.log_metrics({"roc_auc.test": 0.91, "avg_prec.test": 0.4})
    mlcd.save_model(trained(frame), "models/good", sample_input=frame.drop(columns="churned"),
                    training_data=["data/train.parquet"])
"""


def _model_from_a_run(project: Path) -> None:
    split(churn_frame(1500), project)
    (project / "train.py").write_text(TRAIN_IN_A_RUN)
    env_path = str(Path(__file__).resolve().parents[2])
    ran = subprocess.run(
        [sys.executable, "train.py"], cwd=project, capture_output=True, text=True, check=False,
        env={**__import__("os").environ, "PYTHONPATH": env_path},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    with Project.open(project) as opened:
        register_from_path(opened.store, opened.objects, "churn", project / "models" / "good")


@pytest.fixture(scope="module")
def _run_model_template(_init_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``mlcd init`` project whose v1 of churn was saved inside a run (made once)."""
    return prepared_project(_init_template, tmp_path_factory, "run-model", _model_from_a_run)


@pytest.fixture
def run_model_project(_run_model_template: Path, tmp_path: Path) -> Path:
    """A copy, for this test, of the project whose churn v1 came from a run."""
    return copy_project(_run_model_template, tmp_path)


def _evaluate(project: Path, gates: list[str], progress: Any = None) -> Any:
    with Project.open(project) as opened:
        return evaluate(
            opened.store, opened.objects, "churn", 1, data=project / "data" / "test.parquet",
            target="churned", gates=gates, resamples=50, progress=progress,
        )  # fmt: skip


def test_a_gate_on_the_candidates_run_metric_passes_and_fails(run_model_project: Path) -> None:
    project = run_model_project  # churn v1 saved inside a run (made once, copied)
    passing = _evaluate(project, ["run.metrics.roc_auc.test >= 0.9", "roc_auc >= 0.5"])
    assert passing.passed, passing.verdict.summary()
    failing = _evaluate(project, ["run.metrics.roc_auc.test >= 0.95"])
    assert not failing.passed
    assert "roc_auc.test = 0.91" in failing.verdict.summary()


def test_a_gate_on_a_metric_the_run_lacks_is_a_clear_error(run_model_project: Path) -> None:
    project = run_model_project  # churn v1 saved inside a run (made once, copied)
    with pytest.raises(ConfigError) as caught:
        _evaluate(project, ["run.metrics.roc_auc.tset >= 0.9"])
    assert "roc_auc.tset" in caught.value.message
    assert "roc_auc.test" in str(caught.value)


def test_evaluation_reports_progress_and_badges_need_no_emoji_font(run_model_project: Path) -> None:
    project = run_model_project  # churn v1 saved inside a run (made once, copied)
    seen: list[tuple[str, int | None, int | None]] = []
    evaluation = _evaluate(
        project, ["roc_auc >= 0.5"], progress=lambda s, d=None, t=None: seen.append((s, d, t))
    )
    steps = [s for s, _, _ in seen]
    assert any("scoring" in s for s in steps), steps
    page = render_html(evaluation)
    assert "✅" not in page and "❌" not in page
    assert "badge" in page


CONFIG = """
models:
  churn:
    path: models/good
    task: classification
    target: churned
    eval_data: data/test.parquet
gates:
  champion:
    - roc_auc >= 0.5
"""


@pytest.mark.slow
def test_promotion_reuses_the_evaluation_just_made(project: Path) -> None:
    with open(project / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(CONFIG)
    train, _ = split(churn_frame(2000), project)
    frame = pd.read_parquet(train)
    with Project.open(project) as opened:
        for kind in ("weak", "good"):
            save_churn_model(project / "models" / kind, frame, kind=kind, training_data=[train])
            register_from_path(opened.store, opened.objects, "churn", project / "models" / kind)
    first = run_cli(["models", "promote", "churn", "1", "--resamples", "100"], project)
    assert first.returncode == 0, first.stderr

    evaluated = run_cli(
        ["evaluate", "churn", "--candidate", "2", "--resamples", "100", "--json"], project
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr.strip() == ""  # --json: no progress on stderr
    digest = json.loads(evaluated.stdout)["report_digest"]

    promoted = run_cli(
        ["models", "promote", "churn", "2", "--resamples", "100"],
        project,
        env={"FORCE_COLOR": "1", "COLUMNS": "200"},
    )
    assert promoted.returncode == 0, promoted.stderr
    assert "reusing evaluation from" in promoted.stdout
    history = json.loads(run_cli(["models", "history", "churn", "--json"], project).stdout)
    moves = [e for e in history if e["kind"] == "alias.set" and e["version"] == 2]
    assert moves and moves[0]["report_digest"] == digest

    again = run_cli(
        ["evaluate", "churn", "--candidate", "2", "--resamples", "100"],
        project,
        env={"FORCE_COLOR": "1"},
    )
    assert "bootstrap" in again.stderr  # a terminal sees the long steps
