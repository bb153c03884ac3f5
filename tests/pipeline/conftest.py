"""Fixtures for pipeline tests: small real projects on disk, and the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

Cli = Callable[..., subprocess.CompletedProcess[str]]


def write(root: Path, files: dict[str, str]) -> None:
    """Write text files (dedented) below ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def calls(root: Path) -> list[str]:
    """The stages that executed, in order: each test command appends its name to calls.log."""
    log = root / "calls.log"
    return log.read_text().split() if log.exists() else []


def stage_env() -> dict[str, str]:
    """PATH with this interpreter's folder first, so stage commands find ``python``."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """A project folder with the given ``mlcd.yaml`` (and other files)."""

    def make(config: str, files: dict[str, str] | None = None, name: str = "proj") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        write(root, {"mlcd.yaml": config, **(files or {})})
        return root

    return make


@pytest.fixture
def mlcd() -> Cli:
    """Run the real CLI in a project: ``mlcd(root, "run", "--json")``."""

    def call(
        root: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), cwd=root, env={**stage_env(), **(env or {})})

    return call


@pytest.fixture(scope="session")
def _chain_ran_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CHAIN project after one ``mlcd run`` by the real CLI, made once per session."""
    root = tmp_path_factory.mktemp("chain-ran") / "proj"
    root.mkdir()
    write(root, {"mlcd.yaml": CHAIN, **CHAIN_FILES})
    result = run_cli(["run", "--json"], cwd=root, env=stage_env())
    assert result.returncode == 0, result.stderr
    assert sorted(calls(root)) == ["a", "b", "c"]
    return root


@pytest.fixture
def ran_chain(_chain_ran_template: Path, tmp_path: Path) -> Callable[[], Path]:
    """``ran_chain()``: what ``make_project(CHAIN, CHAIN_FILES)`` then ``mlcd run`` leave, as
    a copy of the session's (nothing in the project names its folder but the stat cache,
    keyed by absolute path, which just misses in the copy)."""

    def copy() -> Path:
        root = tmp_path / "proj"
        shutil.copytree(_chain_ran_template, root, symlinks=True)
        return root

    return copy


def run_json(mlcd: Cli, root: Path, *args: str) -> dict[str, Any]:
    """``mlcd run --json ARGS`` that must succeed; returns the parsed output."""
    result = mlcd(root, "run", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def outcomes(document: dict[str, Any]) -> dict[str, str]:
    """``{stage: outcome}`` of a ``run --json`` document."""
    return {s["stage"]: s["outcome"] for s in document["stages"]}


# Three stages: a and b read params, c joins them. Each command logs its name to calls.log.
CHAIN = """
stages:
  a:
    cmd: echo "a=$(cat input.txt)" > a.txt && echo a >> calls.log
    deps: [input.txt]
    params: [a]
    outs: [a.txt]
  b:
    cmd: mkdir -p out_b && grep size params.yaml > out_b/b.txt && echo '{"score":0.5}' > metrics_b.json && echo b >> calls.log
    params: [b.size]
    outs: [out_b]
    metrics: [metrics_b.json]
  c:
    cmd: cat a.txt out_b/b.txt > c.txt && echo c >> calls.log
    deps: [a.txt, out_b]
    outs: [c.txt]
"""
CHAIN_FILES = {
    "input.txt": "hello\n",
    "params.yaml": """
        a: 1
        b:
          size: 10
          unused: 3
        """,
}
