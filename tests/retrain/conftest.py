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


@pytest.fixture
def project(tmp_path: Path) -> Iterator[RetrainProject]:
    root = tmp_path / "proj"
    shutil.copytree(PROJECT, root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    made = RetrainProject(root)
    made.raw(seed=1)
    yield made
