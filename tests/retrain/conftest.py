"""A small real project for retrain tests: generated raw data, a real pipeline, real models."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

PROJECT = Path(__file__).parent / "project"


def stage_env() -> dict[str, str]:
    """Stage commands find this interpreter as ``python``."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


class RetrainProject:
    """The project folder and helpers to drive it through the real CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def raw(self, seed: int, rows: int = 1500) -> None:
        subprocess.run(
            [sys.executable, "make_raw.py", str(seed), str(rows)], cwd=self.root, check=True
        )

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), cwd=self.root, env=stage_env(), timeout=timeout)

    def set_noise(self, noise: float) -> None:
        (self.root / "params.yaml").write_text(f"train:\n  noise: {noise}\n")

    def config(self, text: str) -> None:
        path = self.root / "mlcd.yaml"
        path.write_text(path.read_text().split("retrain:")[0] + text)


def _copy(template: Path, root: Path) -> RetrainProject:
    """A copy of a prepared project (nothing in it names its folder: the store and object paths
    are relative, the stat cache is keyed by path and simply misses in the copy)."""
    shutil.copytree(template, root, symlinks=True)
    return RetrainProject(root)


@pytest.fixture(scope="session")
def _fresh_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project with git and the raw data of seed 1, made once per session (per worker)."""
    root = tmp_path_factory.mktemp("retrain-fresh") / "proj"
    shutil.copytree(PROJECT, root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    RetrainProject(root).raw(seed=1)
    return root


@pytest.fixture(scope="session")
def _baseline_retrain(
    _fresh_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The fresh project after ``mlcd retrain clf --reason baseline --json`` (v1 is the
    champion), made once per session by the real CLI, and that call's result."""
    made = _copy(_fresh_template, tmp_path_factory.mktemp("retrain-baseline") / "proj")
    result = made.cli("retrain", "clf", "--reason", "baseline", "--json")
    return made.root, result


@pytest.fixture(scope="session")
def _baseline_template(_baseline_retrain: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    root, result = _baseline_retrain
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="session")
def _watched_template(_baseline_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline project after one ``mlcd watch --once`` (the data digests are recorded)."""
    made = _copy(_baseline_template, tmp_path_factory.mktemp("retrain-watched") / "proj")
    result = made.cli("watch", "--once")
    assert result.returncode == 0, result.stderr
    return made.root


@pytest.fixture
def project(tmp_path: Path, _fresh_template: Path) -> Iterator[RetrainProject]:
    """A fresh project: no model yet."""
    yield _copy(_fresh_template, tmp_path / "proj")


@pytest.fixture
def baselined(tmp_path: Path, _baseline_template: Path) -> Iterator[RetrainProject]:
    """A project whose first retrain (reason "baseline") promoted v1 to champion."""
    yield _copy(_baseline_template, tmp_path / "proj")


@pytest.fixture
def first_retrain(
    tmp_path: Path, _baseline_retrain: tuple[Path, subprocess.CompletedProcess[str]]
) -> tuple[RetrainProject, subprocess.CompletedProcess[str]]:
    """A copy of the project right after its first manual retrain, and that retrain's result."""
    template, result = _baseline_retrain
    return _copy(template, tmp_path / "proj"), result


@pytest.fixture
def watched(tmp_path: Path, _watched_template: Path) -> Iterator[RetrainProject]:
    """A baselined project on which ``watch --once`` recorded the data digests."""
    yield _copy(_watched_template, tmp_path / "proj")
