"""``mlcd diff``: params and metrics of the workspace against git revisions and runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mlcd.store import runs
from tests.conftest import run_cli
from tests.tracking.conftest import clean_env

CONFIG = """\
stages:
  train:
    cmd: python train.py
    params: [train.lr, train.n_estimators]
    metrics: [metrics/train.json]
  evaluate:
    cmd: python evaluate.py
    wdir: eval
    params: [{../extra.yaml: [threshold]}]
    metrics: [scores.yaml]
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def _lock(lr: float, n: int, accuracy: float, roc_auc: float, threshold: float) -> str:
    return yaml.safe_dump(
        {
            "schema": 1,
            "stages": {
                "train": {
                    "fingerprint": "a" * 64,
                    "cmd": "python train.py",
                    "params": {"params.yaml": {"train.lr": lr, "train.n_estimators": n}},
                    "metrics": {"metrics/train.json": {"accuracy": accuracy, "roc_auc": roc_auc}},
                },
                "evaluate": {
                    "fingerprint": "b" * 64,
                    "cmd": "python evaluate.py",
                    "params": {"extra.yaml": {"threshold": threshold}},
                    "metrics": {"eval/scores.yaml": {"f1": {"macro": 0.5}}},
                },
            },
        }
    )


def _write_state(root: Path, lr: float, n: int, accuracy: float, roc_auc: float) -> None:
    (root / "params.yaml").write_text(
        yaml.safe_dump({"train": {"lr": lr, "n_estimators": n}, "other": 1})
    )
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "train.json").write_text(
        json.dumps({"accuracy": accuracy, "roc_auc": roc_auc, "note": "text is ignored"})
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with two commits of a project; the workspace then changes further."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "mlcd.yaml").write_text(CONFIG)
    (root / "extra.yaml").write_text("threshold: 0.5\n")
    (root / "eval").mkdir()
    (root / "eval" / "scores.yaml").write_text("f1: {macro: 0.5}\n")
    _write_state(root, 0.1, 100, 0.90, 0.95)
    (root / "mlcd.lock").write_text(_lock(0.1, 100, 0.90, 0.95, 0.5))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "baseline")
    _write_state(root, 0.2, 100, 0.92, 0.95)
    (root / "mlcd.lock").write_text(_lock(0.2, 100, 0.92, 0.95, 0.5))
    _git(root, "commit", "-q", "-am", "higher lr")
    # the workspace: edited params and metrics, lock not yet regenerated
    _write_state(root, 0.3, 200, 0.93, 0.94)
    (root / "extra.yaml").write_text("threshold: 0.6\n")
    return root


def _diff(repo: Path, *args: str) -> dict:
    result = run_cli(["diff", *args, "--json"], cwd=repo, env=clean_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _rows(data: dict) -> dict[str, tuple]:
    return {f"{r['kind']}:{r['key']}": (r["old"], r["new"], r["change"]) for r in data["rows"]}


def test_workspace_against_head_shows_changed_params_and_metric_deltas(repo: Path) -> None:
    data = _diff(repo)
    assert data["old"].startswith("HEAD") and data["new"] == "workspace"
    rows = _rows(data)
    assert rows["param:train.lr"] == (0.2, 0.3, pytest.approx(0.1))
    assert rows["param:train.n_estimators"] == (100, 200, 100)
    assert rows["param:extra.yaml:threshold"] == (0.5, 0.6, pytest.approx(0.1))
    assert rows["metric:accuracy"] == (0.92, 0.93, pytest.approx(0.01))
    assert rows["metric:roc_auc"] == (0.95, 0.94, pytest.approx(-0.01))
    assert "metric:f1.macro" not in rows  # unchanged
    assert "param:other" not in rows  # not a param any stage declares


def test_between_two_revisions_and_all_rows(repo: Path) -> None:
    data = _diff(repo, "HEAD~1", "--against", "main", "--all")
    rows = _rows(data)
    assert rows["param:train.lr"] == (0.1, 0.2, pytest.approx(0.1))
    assert rows["metric:accuracy"] == (0.9, 0.92, pytest.approx(0.02))
    assert rows["param:train.n_estimators"] == (100, 100, 0)
    statuses = {f"{r['kind']}:{r['key']}": r["status"] for r in data["rows"]}
    assert statuses["metric:f1.macro"] == "same" and statuses["param:train.lr"] == "changed"


def test_markdown_for_a_pull_request_comment(repo: Path) -> None:
    result = run_cli(["diff", "HEAD~1", "--md"], cwd=repo, env=clean_env())
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("### mlcd diff: `HEAD~1")
    assert "| key | old | new | change |" in text
    assert "| train.lr | 0.1 | 0.3 | +0.2 (+200.0%) |" in text
    assert "| accuracy | 0.9 | 0.93 | +0.03 (+3.3%) |" in text


def test_table_output_names_both_sides(repo: Path) -> None:
    result = run_cli(["diff"], cwd=repo, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert "workspace" in result.stdout and "train.lr" in result.stdout
    assert "+0.1" in result.stdout


def test_against_a_run_in_the_store(repo: Path, project_store) -> None:
    store = project_store(repo)
    with store.write() as conn:
        run_id = runs.create_run(conn, name="tuned", kind="pipeline")
        runs.log_params(conn, run_id, {"train.lr": 0.05, "train.n_estimators": 100})
        runs.log_metrics(conn, run_id, [runs.MetricPoint("accuracy", 0.97)])
    data = _diff(repo, "HEAD", "--against", run_id[:8])
    rows = _rows(data)
    assert data["new"] == f"run {run_id[:8]} (tuned)"
    assert rows["param:train.lr"] == (0.2, 0.05, pytest.approx(-0.15))
    assert rows["metric:accuracy"] == (0.92, 0.97, pytest.approx(0.05))
    assert rows["metric:roc_auc"] == (0.95, None, None)
    data = _diff(repo, "run:tuned")
    assert _rows(data)["param:train.lr"] == (0.05, 0.3, pytest.approx(0.25))


def test_revision_without_a_lock_is_empty_with_a_note(repo: Path) -> None:
    empty_tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    commit = subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit-tree",
            empty_tree,
            "-m",
            "before mlcd",
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    _git(repo, "branch", "before-mlcd", commit)
    data = _diff(repo, "before-mlcd")
    assert any("has no mlcd.lock" in note for note in data["notes"])
    assert _rows(data)["param:train.lr"] == (None, 0.3, None)


def test_unknown_reference_is_a_usage_error(repo: Path) -> None:
    result = run_cli(["diff", "no-such-thing"], cwd=repo, env=clean_env())
    assert result.returncode == 2
    assert "neither a git revision nor a run" in result.stderr


def test_broken_lock_at_a_revision_is_reported(repo: Path) -> None:
    (repo / "mlcd.lock").write_text("stages: [not, a, mapping]\n")
    _git(repo, "commit", "-q", "-am", "broken lock")
    result = run_cli(["diff", "HEAD"], cwd=repo, env=clean_env())
    assert result.returncode == 2
    assert "no 'stages' mapping" in result.stderr


def test_unparsable_metrics_file_falls_back_to_the_lock(repo: Path) -> None:
    (repo / "metrics" / "train.json").write_text("{not json")
    data = _diff(repo)
    assert any("train.json could not be parsed" in note for note in data["notes"])
    assert "metric:accuracy" not in _rows(data)  # the workspace lock still says 0.92


def test_outside_git_says_how_to_compare(sqlite_project: Path) -> None:
    result = run_cli(["diff"], cwd=sqlite_project, env=clean_env())
    assert result.returncode == 2
    assert "not in a git repository" in result.stderr and "git init" in result.stderr
