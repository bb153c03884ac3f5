"""`mlcd init`, `mlcd config validate`, exit codes and error messages, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_init_scaffolds_project_and_keeps_existing_files(tmp_path: Path) -> None:
    root = tmp_path / "p"
    first = run_cli(["init", str(root), "--json"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert set(json.loads(first.stdout)["created"]) == {"mlcd.yaml", "params.yaml", ".gitignore"}
    assert "/.mlcd/" in (root / ".gitignore").read_text()
    (root / "params.yaml").write_text("seed: 7\n")
    second = run_cli(["init", str(root), "--json"], cwd=tmp_path)
    assert "params.yaml" in json.loads(second.stdout)["kept"]
    assert (root / "params.yaml").read_text() == "seed: 7\n"
    assert (root / ".gitignore").read_text().count("/.mlcd/") == 1


def test_validate_accepts_scaffolded_config(project: Path) -> None:
    result = run_cli(["config", "validate", "--json"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["valid"] is True


def test_yaml_syntax_error_exits_2_with_line(project: Path) -> None:
    (project / "mlcd.yaml").write_text("stages:\n  train:\n    cmd: [unclosed\n    deps: []\n")
    result = run_cli(["config", "validate"], cwd=project)
    assert result.returncode == 2
    assert "mlcd.yaml:" in result.stderr and "invalid YAML" in result.stderr


def test_unknown_key_exits_2_with_line_and_suggestion(project: Path) -> None:
    (project / "mlcd.yaml").write_text(
        "stages:\n  train:\n    cmd: python train.py\n    dep: [a.csv]\n"
    )
    result = run_cli(["config", "validate"], cwd=project)
    assert result.returncode == 2
    assert "mlcd.yaml:4: stages.train.dep: unknown key 'dep': did you mean 'deps'?" in result.stderr


def test_wrong_type_exits_2_with_line_and_key(project: Path) -> None:
    (project / "mlcd.yaml").write_text("serve:\n  port: not-a-port\n")
    result = run_cli(["config", "validate"], cwd=project)
    assert result.returncode == 2
    assert "mlcd.yaml:2: serve.port:" in result.stderr


def test_missing_config_says_how_to_fix(tmp_path: Path) -> None:
    result = run_cli(["gc"], cwd=tmp_path)
    assert result.returncode == 2
    assert "mlcd init" in result.stderr


def test_bad_reference_is_reported(project: Path) -> None:
    (project / "mlcd.yaml").write_text("models:\n  churn:\n    path: m\n    stage: trian\n")
    result = run_cli(["config", "validate"], cwd=project)
    assert result.returncode == 2
    assert "mlcd.yaml:4: models.churn.stage: no stage named 'trian'" in result.stderr


def test_unknown_command_is_usage_error(project: Path) -> None:
    result = run_cli(["no-such-command"], cwd=project)
    assert result.returncode == 2


def test_env_overrides_store(project: Path, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.db"
    result = run_cli(
        ["config", "show", "--json"], cwd=project, env={"MLCD_STORE": f"sqlite:///{db}"}
    )
    assert json.loads(result.stdout)["store"] == f"sqlite:///{db}"
