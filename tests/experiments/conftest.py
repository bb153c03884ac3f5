"""Fixtures for experiment tests: a small two-stage project in a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.conftest import Cli, make_project, mlcd  # noqa: F401  (fixtures)

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


@pytest.fixture
def project(make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path) -> Path:  # noqa: F811
    """The project, run once and committed: a clean git work tree with its outputs."""
    root = make_project(CONFIG, FILES)
    git(root, "init", "-q", "-b", "main")
    result = mlcd(root, "run", "--json", env=env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    assert git(root, "status", "--porcelain") == ""
    (tmp_path / "calls.log").unlink()
    return root


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
