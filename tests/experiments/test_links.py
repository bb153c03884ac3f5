"""Restores into a throwaway experiment workspace are hard links of the stored objects,
checked after every stage: a stage that writes into a linked input fails its experiment and
the corrupt object leaves the store (``mlcd.experiments.links``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.experiments.conftest import git
from tests.pipeline.conftest import Cli, make_project, mlcd  # noqa: F401  (fixtures)

CONFIG = """
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py, input.txt]
    outs: [prepared.txt]
  train:
    cmd: python train.py
    deps: [train.py, prepared.txt]
    params: [train.mode]
    outs: [model.txt]
    metrics: [metrics.json]
"""
FILES = {
    "input.txt": "hello\n",
    "params.yaml": "train:\n  mode: base\n",
    "prepare.py": """
        open("prepared.txt", "w").write(open("input.txt").read() * 3)
        """,
    # mode read: reads its input; touch: chmods and touches it (same bytes); append: makes it
    # writable and appends to it (what a careless script does), then reads it
    "train.py": """
        import json, os, yaml
        mode = yaml.safe_load(open("params.yaml"))["train"]["mode"]
        if mode == "touch":
            os.chmod("prepared.txt", 0o644)
            os.utime("prepared.txt")
        elif mode == "append":
            os.chmod("prepared.txt", 0o644)
            with open("prepared.txt", "a") as out:
                out.write("more\\n")
        data = open("prepared.txt").read()
        open("model.txt", "w").write(f"{mode} {len(data)}\\n")
        links = os.stat("prepared.txt").st_nlink
        json.dump({"size": len(data), "links": links}, open("metrics.json", "w"))
        """,
    ".gitignore": "/.mlcd/\n",
}


@pytest.fixture
def linked_project(make_project: Callable[..., Path], mlcd: Cli) -> Path:  # noqa: F811
    root = make_project(CONFIG, FILES)
    git(root, "init", "-q", "-b", "main")
    done = mlcd(root, "run", "--json")
    assert done.returncode == 0, done.stderr
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    return root


def _object(root: Path, stage: str, path: str) -> Path:
    digest = yaml.safe_load((root / "mlcd.lock").read_text())["stages"][stage]["outs"][path]
    return root / ".mlcd" / "objects" / digest[:2] / digest[2:]


def _exp(mlcd: Cli, root: Path, mode: str, name: str) -> tuple[int, dict]:  # noqa: F811
    done = mlcd(root, "exp", "run", "-S", f"train.mode={mode}", "-n", name, "--json")
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def test_restored_outputs_are_links_of_the_store_and_the_results_do_not_change(
    linked_project: Path,
    mlcd: Cli,  # noqa: F811
) -> None:
    root = linked_project
    stored = _object(root, "prepare", "prepared.txt")
    assert stored.stat().st_nlink == 1  # cache.link copy: the project has its own copy

    code, shown = _exp(mlcd, root, "read", "reader")

    assert code == 0, shown
    outcomes = {s["stage"]: s["outcome"] for s in shown["stages"]}
    assert outcomes == {"prepare": "cached", "train": "ran"}
    # the stage read a hard link of the stored object (store + workspace), not a copy
    metrics = json.loads(mlcd(root, "exp", "show", "--json").stdout)["experiments"]
    row = next(r for r in metrics if r["name"] == "reader")
    assert row["metrics"]["links"] >= 2 and row["metrics"]["size"] == len("hello\n") * 3
    assert stored.stat().st_nlink == 1 and oct(stored.stat().st_mode & 0o777) == "0o444"
    assert not (root / ".mlcd" / "exp").exists() or not any(
        p for p in (root / ".mlcd" / "exp").iterdir() if p.name != "logs"
    )
    # exp apply brings the experiment's outputs back into the work tree, as copies
    applied = mlcd(root, "exp", "apply", "reader")
    assert applied.returncode == 0, applied.stderr
    assert (root / "model.txt").read_text() == "read 18\n"
    assert (root / "prepared.txt").stat().st_nlink == 1


def test_a_stage_that_only_touches_its_linked_input_passes_and_the_object_stays_read_only(
    linked_project: Path,
    mlcd: Cli,  # noqa: F811
) -> None:
    root = linked_project
    stored = _object(root, "prepare", "prepared.txt")

    code, shown = _exp(mlcd, root, "touch", "toucher")

    assert code == 0, shown
    assert stored.read_text() == "hello\n" * 3
    assert oct(stored.stat().st_mode & 0o777) == "0o444"  # the chmod was undone


def test_a_stage_that_appends_to_its_linked_input_fails_and_the_corrupt_object_is_dropped(
    linked_project: Path,
    mlcd: Cli,  # noqa: F811
) -> None:
    root = linked_project
    stored = _object(root, "prepare", "prepared.txt")
    project_copy = (root / "prepared.txt").read_bytes()

    code, shown = _exp(mlcd, root, "append", "writer")

    assert code == 3, shown
    train = next(s for s in shown["stages"] if s["stage"] == "train")
    assert train["outcome"] == "failed"
    assert "prepared.txt" in train["error"] and "written to" in train["error"]
    assert "removed from the store" in train["error"]
    assert not stored.exists()  # the corrupt object left the store
    assert (root / "prepared.txt").read_bytes() == project_copy  # the work tree is intact
    listed = json.loads(mlcd(root, "exp", "show", "--json").stdout)["experiments"]
    assert next(r for r in listed if r["name"] == "writer")["status"] == "failed"

    # the next experiment cannot restore prepare any more: it runs it again, and is right
    code, shown = _exp(mlcd, root, "read", "after")
    assert code == 0, shown
    outcomes = {s["stage"]: s["outcome"] for s in shown["stages"]}
    assert outcomes == {"prepare": "ran", "train": "ran"}
    assert stored.read_text() == "hello\n" * 3
    assert mlcd(root, "verify").returncode == 0


def test_a_kept_workspace_gets_copies_as_cache_link_says(
    linked_project: Path,
    mlcd: Cli,  # noqa: F811
) -> None:
    root = linked_project
    done = mlcd(root, "exp", "run", "-S", "train.mode=read", "--keep", "--json")
    assert done.returncode == 0, done.stderr
    workspace = Path(json.loads(done.stdout)["workspace"])
    assert (workspace / "prepared.txt").stat().st_nlink == 1
    assert not os.path.samefile(
        workspace / "prepared.txt", _object(root, "prepare", "prepared.txt")
    )
