"""Fixtures for tracking tests: a project whose mlcd.yaml points at a real SQLite or PostgreSQL
store, and a runner for small Python scripts that log through the public API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcd.store import Store


@pytest.fixture
def tracked_project(tmp_path: Path, store_url: str) -> Path:
    """A project (SQLite and PostgreSQL variants) with no stages."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text(f"store: {store_url}\n", encoding="utf-8")
    return root


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Path:
    """A project on the default embedded SQLite store."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text("{}\n", encoding="utf-8")
    return root


@pytest.fixture
def project_store(open_store) -> Iterator[object]:
    """Open the store of a project folder (closed when the test ends)."""

    def factory(root: Path) -> Store:
        from mlcd.config import load_config

        return open_store(load_config(root).store, root=root)

    yield factory


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any MLCD_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_script(
    code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter (the way user code runs)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def _no_stage_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start outside any pipeline stage, whatever the shell that ran pytest had set."""
    for name in list(os.environ):
        if name.startswith("MLCD_"):
            monkeypatch.delenv(name)
