"""``mlcd exp run --queue`` on the embedded store's fast path (stdlib sqlite3, no SQLAlchemy)
queues the same entry as the full path, refuses the same names, and is taken only when it may."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlcd.experiments.queue import open_queue_store
from tests.experiments.conftest import CONFIG, FILES, env_for, git
from tests.pipeline.conftest import Cli

VARYING = ("id", "name", "created_at")


def _queued(mlcd: Cli, root: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = mlcd(root, "exp", "run", "--queue", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)
    assert isinstance(entry, dict)
    return entry


def test_the_fast_and_full_paths_queue_the_same_entry_and_refuse_the_same_names(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    root = make_project(CONFIG, FILES)
    git(root, "init", "-q", "-b", "main")
    ran = mlcd(root, "exp", "run", "-S", "train.lr=0.7", "-n", "kept", "--json", env=env)
    assert ran.returncode == 0, ran.stderr  # a run tagged as experiment 'kept'
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")

    found = open_queue_store(root)  # mlcd.yaml was checked in full by the commands above
    assert found is not None and found[0] == root.resolve()
    found[1].dispose()
    fast = _queued(mlcd, root, env, "-S", "train.lr=0.5", "-n", "a")
    full = _queued(mlcd, root, {**env, "MLCD_NO_FAST_STORE": "1"}, "-S", "train.lr=0.5", "-n", "b")
    assert {k: v for k, v in fast.items() if k not in VARYING} == {
        k: v for k, v in full.items() if k not in VARYING
    }
    assert fast["status"] == "queued" and fast["settings"] == ["train.lr=0.5"]
    assert fast["kill_requested"] is False and fast["options"] == {
        "jobs": None,
        "executor": "local",
    }

    listed = mlcd(root, "exp", "queue", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    names = [e["name"] for e in json.loads(listed.stdout)]
    assert sorted(names) == ["a", "b"]

    for extra in ({}, {"MLCD_NO_FAST_STORE": "1"}):
        for taken in ("a", "kept"):  # a queued name, and an experiment that ran
            refused = mlcd(root, "exp", "run", "--queue", "-n", taken, env={**env, **extra})
            assert refused.returncode == 2
            assert f"an experiment named '{taken}' exists already" in refused.stderr
        bad = mlcd(root, "exp", "run", "--queue", "-S", "train.nope", env={**env, **extra})
        assert bad.returncode == 2 and "nope" in bad.stderr
    listed = mlcd(root, "exp", "queue", "list", "--json", env=env)
    assert len(json.loads(listed.stdout)) == 2  # nothing refused was queued


def test_an_edited_config_or_a_store_elsewhere_takes_the_full_path(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    root = make_project(CONFIG, FILES)
    assert open_queue_store(root) is None  # no store yet: the full path creates it
    _queued(mlcd, root, env, "-S", "train.lr=0.1")
    found = open_queue_store(root)
    assert found is not None and open_queue_store(tmp_path / "nowhere") is None
    found[1].dispose()
    config = root / "mlcd.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert open_queue_store(root) is None  # not validated since the edit
    entry = _queued(mlcd, root, env, "-S", "train.lr=0.2")
    assert entry["status"] == "queued"
    assert open_queue_store(root) is not None  # the full path checked the edited file again
