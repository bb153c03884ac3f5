"""`mlcd init --ci`: the generated workflows are valid for their CI systems."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import run_cli


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    assert found, "actionlint is part of the dev extra: pip install -e '.[dev]'"
    return found


def test_github_workflow_passes_actionlint(tmp_path: Path) -> None:
    root = tmp_path / "p"
    result = run_cli(["init", str(root), "--ci", "github", "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ".github/workflows/mlcd.yml" in json.loads(result.stdout)["created"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    lint = subprocess.run(
        [_actionlint(), ".github/workflows/mlcd.yml"], cwd=root, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    workflow = yaml.safe_load((root / ".github/workflows/mlcd.yml").read_text())
    commands = [step.get("run", "") for step in workflow["jobs"]["mlcd"]["steps"]]
    assert any("mlcd ci --base" in c for c in commands)
    assert any("mlcd ci --promote" in c for c in commands)


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    root = tmp_path / "p"
    run_cli(["init", str(root), "--ci", "github"], cwd=tmp_path)
    path = root / ".github/workflows/mlcd.yml"
    path.write_text(
        path.read_text().replace("runs-on: ubuntu-latest", "runs-on: ${{ matrix.nope }}")
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    lint = subprocess.run([_actionlint(), str(path)], cwd=root, capture_output=True, text=True)
    assert lint.returncode != 0


def test_gitlab_pipeline_has_mr_check_and_default_branch_promotion(tmp_path: Path) -> None:
    root = tmp_path / "p"
    result = run_cli(["init", str(root), "--ci", "gitlab"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pipeline = yaml.safe_load((root / ".gitlab-ci.yml").read_text())
    check, promote = pipeline["mlcd:check"], pipeline["mlcd:promote"]
    assert pipeline["stages"] == ["mlcd"]
    for job in (check, promote):
        assert job["stage"] in pipeline["stages"]
        assert all(isinstance(line, str) for line in job["script"])
        assert job["artifacts"]["reports"]["junit"] == "mlcd-junit.xml"
    assert check["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert any("mlcd ci --base" in line for line in check["script"])
    assert promote["rules"][0]["if"] == "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"
    assert any("--promote" in line for line in promote["script"])


def test_unknown_ci_kind_is_usage_error(tmp_path: Path) -> None:
    result = run_cli(["init", str(tmp_path / "p"), "--ci", "jenkins"], cwd=tmp_path)
    assert result.returncode == 2
    assert "github" in result.stderr and not (tmp_path / "p").exists()
