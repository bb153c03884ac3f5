"""Building an experiment's workspace: the project's files, no outputs, data hard-linked."""

from __future__ import annotations

import os
from pathlib import Path

from mlcd.experiments.workspace import LINK_ABOVE_BYTES, build_workspace
from tests.experiments.conftest import git


def _project(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('hi')\n")
    (root / "params.yaml").write_text("a: 1\n")
    (root / "big.bin").write_bytes(b"x" * (LINK_ABOVE_BYTES + 1))
    (root / "model.txt").write_text("an output\n")
    (root / "data").mkdir()
    (root / "data" / "raw.csv").write_text("a,b\n")
    (root / "data" / "raw.csv.mlcd").write_text("pointer\n")
    (root / ".mlcd").mkdir()
    (root / ".mlcd" / "mlcd.db").write_text("state\n")


def test_workspace_outside_git_copies_files_but_outputs_and_state(tmp_path: Path) -> None:
    root, dest = tmp_path / "proj", tmp_path / "ws"
    _project(root)
    dest.mkdir()

    placed = build_workspace(root, dest, ["model.txt"], ["data/raw.csv"])

    assert sorted(placed) == [
        "big.bin",
        "data/raw.csv",
        "data/raw.csv.mlcd",
        "params.yaml",
        "src/train.py",
    ]
    assert not (dest / "model.txt").exists() and not (dest / ".mlcd").exists()
    assert os.path.samefile(root / "big.bin", dest / "big.bin")  # large: hard-linked
    assert os.path.samefile(root / "data" / "raw.csv", dest / "data" / "raw.csv")  # data
    assert not os.path.samefile(root / "params.yaml", dest / "params.yaml")  # small: copied


def test_workspace_in_git_takes_listed_files_and_tracked_data(tmp_path: Path) -> None:
    root, dest = tmp_path / "proj", tmp_path / "ws"
    _project(root)
    (root / "scratch.log").write_text("ignored\n")
    (root / ".gitignore").write_text("/.mlcd/\n/model.txt\n/scratch.log\n/data/raw.csv\n")
    git(root, "init", "-q")
    dest.mkdir()

    placed = build_workspace(root, dest, ["model.txt"], [])

    assert "scratch.log" not in placed  # git ignores it
    assert "data/raw.csv" in placed  # ignored by git, but tracked by its pointer
    assert "model.txt" not in placed
    assert (dest / ".gitignore").is_file()
