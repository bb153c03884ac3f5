"""Fixtures for experiment tests: a small two-stage project in a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.pipeline.conftest import (  # noqa: F401  (fixtures)
    Cli,
    make_project,
    mlcd,
    stage_env,
    write,
)

# prepare reads prepare.n; train reads train.lr. Each command logs its name to $CALLS_LOG,
# outside the project, so the commands an experiment runs in its workspace are seen too.
CONFIG = """
stages:
  prepare:
    cmd: python prepare.py && echo prepare >> "$CALLS_LOG"
    deps: [prepare.py, input.txt]
    params: [prepare.n]
    outs: [prepared.txt]
  train:
    cmd: python train.py && echo train >> "$CALLS_LOG"
    deps: [train.py, prepared.txt]
    params: [train.lr]
    outs: [model.txt]
    metrics: [metrics.json]
"""
FILES = {
    "input.txt": "hello\n",
    "params.yaml": """
        prepare:
          n: 3
        train:
          lr: 0.1
        """,
    "prepare.py": """
        import yaml
        n = yaml.safe_load(open("params.yaml"))["prepare"]["n"]
        text = open("input.txt").read()
        open("prepared.txt", "w").write(text * n)
        """,
    "train.py": """
        import json, yaml
        lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
        data = open("prepared.txt").read()
        open("model.txt", "w").write(f"model lr={lr} size={len(data)}\\n")
        json.dump({"score": lr * 10, "size": len(data)}, open("metrics.json", "w"))
        """,
    ".gitignore": "/.mlcd/\n",
}


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` (with a fixed identity); returns its stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the work tree but ``.git/`` and ``.mlcd/``: bytes and mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.split("/")[0] in (".git", ".mlcd") or not path.is_file():
            continue
        found[relative] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


@pytest.fixture(scope="session")
def committed_templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``committed_templates(config, files)``: the project with that ``mlcd.yaml``, run once by
    the real CLI and committed in a new git repository, made once per session (per worker)
    for each config and copied by the tests (``committed_project``)."""
    made: dict[tuple[str, str], Path] = {}

    def make(config: str = CONFIG, files: dict[str, str] | None = None) -> Path:
        files = FILES if files is None else files
        key = (config, json.dumps(files, sort_keys=True))
        if key not in made:
            base = tmp_path_factory.mktemp("exp-template")
            root = base / "proj"
            root.mkdir()
            write(root, {"mlcd.yaml": config, **files})
            git(root, "init", "-q", "-b", "main")
            result = run_cli(["run", "--json"], cwd=root, env={**stage_env(), **env_for(base)})
            assert result.returncode == 0, result.stderr
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", "baseline")
            assert sorted(calls(base)) == ["prepare", "train"]
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="session")
def _committed_template(committed_templates: Callable[..., Path]) -> Path:
    """The project, run once by the real CLI and committed, once per session (per worker)."""
    return committed_templates()


def committed_project(template: Path, tmp_path: Path, name: str = "proj") -> Path:
    """A copy of the run and committed project in ``tmp_path``: nothing in it names its folder
    (the store and the run records hold relative paths only; the stat cache, keyed by absolute
    path, just misses), so the copy is what the CLI would have made there."""
    root = tmp_path / name
    shutil.copytree(template, root, symlinks=True)
    assert git(root, "status", "--porcelain") == ""
    return root


@pytest.fixture
def project(_committed_template: Path, tmp_path: Path) -> Path:
    """The project, run once and committed: a clean git work tree with its outputs."""
    return committed_project(_committed_template, tmp_path)


@pytest.fixture
def committed_for(
    committed_templates: Callable[..., Path],
    make_project: Callable[..., Path],  # noqa: F811
    mlcd: Cli,  # noqa: F811
    tmp_path: Path,
) -> Callable[..., Path]:
    """``committed_for(env, files)``: the project run once and committed, calls.log empty. On
    the project's own SQLite store it is a copy of the session's template (made by the same
    CLI and git calls); with ``MLCD_STORE`` in ``env`` the baseline run is recorded in that
    store, so it is run here."""

    def make(env: dict[str, str], files: dict[str, str] | None = None) -> Path:
        files = FILES if files is None else files
        if "MLCD_STORE" not in env:
            return committed_project(committed_templates(CONFIG, files), tmp_path)
        root = make_project(CONFIG, files)
        git(root, "init", "-q", "-b", "main")
        result = mlcd(root, "run", "--json", env=env)
        assert result.returncode == 0, result.stderr
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "baseline")
        (tmp_path / "calls.log").unlink()
        return root

    return make


def env_for(tmp_path: Path) -> dict[str, str]:
    """The environment the stage commands log their calls through."""
    return {"CALLS_LOG": str(tmp_path / "calls.log")}


def calls(tmp_path: Path) -> list[str]:
    """The stages that ran since the project fixture, in order."""
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


def exp_json(mlcd: Cli, root: Path, tmp_path: Path, *args: str) -> Any:  # noqa: F811
    """``mlcd exp ARGS --json`` that must succeed; returns the parsed output."""
    result = mlcd(root, "exp", *args, "--json", env=env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
