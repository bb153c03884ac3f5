"""Helpers for autolog tests: user scripts run in fresh interpreters (autolog patches the
libraries process-wide, so it never runs in the pytest process), and readers of what a run
recorded in the real store and object store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlcd.store import Store

#: Small data shared by the scripts: 120 rows, 4 named features, a binary target.
DATA = """
import numpy as np, pandas as pd
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.rand(120, 4), columns=["a", "b", "c", "d"])
y = ((X.a + 0.3 * X.b + 0.1 * rng.rand(120)) > 0.7).astype(int)
X_val, y_val = X.iloc[:40], y.iloc[:40]
"""


def script_env(**extra: str) -> dict[str, str]:
    """This environment without MLCD_* variables, one OpenMP thread, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
    env.update(extra)
    return env


def run_script(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a user script in a fresh interpreter; it must succeed."""
    script = cwd / "user_script.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=script_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


class Recorded:
    """What one run holds in a project's store, read back through mlcd's own repositories."""

    def __init__(self, store: Store, root: Path, run_id: str, artifacts: str) -> None:
        from mlcd.store import runs

        self.root = root
        self.run_id = run_id
        self.artifacts_url = artifacts
        with store.read() as conn:
            self.run = runs.get_run(conn, run_id)
            self.params = runs.params_of(conn, run_id)
            self.tags = runs.tags_of(conn, run_id)
            self.latest = runs.latest_metrics_of(conn, run_id)
            self.history = {}
            for point in runs.metric_history(conn, run_id):
                self.history.setdefault(point.key, []).append((point.step, point.value))
            self.files = runs.artifacts_of(conn, run_id)

    def steps(self, key: str) -> list[int]:
        return sorted(step for step, _ in self.history.get(key, []))

    def artifact(self, path: str, stage: str | None = None) -> Any:
        found = [a for a in self.files if a.path == path and (stage is None or a.stage == stage)]
        assert len(found) == 1, [(a.path, a.stage) for a in self.files]
        return found[0]

    def load_model(self, tmp: Path, name: str = "model", stage: str | None = None) -> Any:
        """Fetch the package by digest from the object store and load it with mlcd."""
        from mlcd import load_model
        from mlcd.digest import Digest
        from mlcd.objects import open_object_store

        ref = self.artifact(name, stage)
        dest = tmp / f"fetched-{stage or 'run'}-{name}"
        open_object_store(self.artifacts_url, self.root).get_dir(Digest.parse(ref.digest), dest)
        return load_model(dest)

    def read_text(self, name: str, stage: str | None = None) -> str:
        from mlcd.digest import Digest
        from mlcd.objects import open_object_store

        ref = self.artifact(name, stage)
        target = self.root / ".fetched.txt"
        open_object_store(self.artifacts_url, self.root).get_file(Digest.parse(ref.digest), target)
        return target.read_text(encoding="utf-8")


class Runs:
    """``runs(root, store_url=None, kind=None, name=None)``: the project's only such run."""

    def __init__(self, open_store: Any) -> None:
        self.open_store = open_store

    def _all(self, root: Path, store_url: str | None) -> tuple[Store, list[Any]]:
        from mlcd.config import DEFAULT_STORE
        from mlcd.tracking.query import search

        store = self.open_store(store_url or DEFAULT_STORE, root=root)
        with store.read() as conn:
            return store, search(conn, None, None, 50)

    def __call__(
        self,
        root: Path,
        store_url: str | None = None,
        kind: str | None = None,
        name: str | None = None,
    ) -> Recorded:
        from mlcd.config import DEFAULT_ARTIFACTS

        store, runs = self._all(root, store_url)
        found = [
            r for r in runs if (kind is None or r.kind == kind) and (name is None or r.name == name)
        ]
        assert len(found) == 1, [(r.id, r.kind, r.name) for r in runs]
        return Recorded(store, root, found[0].id, DEFAULT_ARTIFACTS)

    def count(self, root: Path, store_url: str | None = None) -> int:
        return len(self._all(root, store_url)[1])


@pytest.fixture
def recorded(open_store: Any) -> Runs:
    """Reads what runs recorded in a project's store (see ``Runs``)."""
    return Runs(open_store)
