"""``mlcd doctor`` (issue 20, item 7): the command the corrupt-database hint names exists and works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli


def mlcd(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``mlcd`` console script."""
    return subprocess.run(
        [sys.executable, "-m", "mlcd.cli.entry", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def _ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose one stage ran, and one tracked data file, made once per module."""
    root = tmp_path_factory.mktemp("doctor") / "proj"
    assert run_cli(["init", str(root)], cwd=root.parent).returncode == 0
    (root / "mlcd.yaml").write_text(
        "version: 1\nstages:\n  train:\n"
        "    cmd: python -c \"open('model.txt', 'w').write('weights')\"\n"
        "    outs: [model.txt]\n",
        encoding="utf-8",
    )
    (root / "raw.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    for command in (["run"], ["data", "add", "raw.csv"]):
        result = mlcd(command, cwd=root)
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def project(_ran: Path, tmp_path: Path) -> Path:
    """A project whose one stage ran, and one tracked data file: a copy of the module's (the
    project names no folder of its own but in the stat cache, which just misses)."""
    root = tmp_path / "proj"
    shutil.copytree(_ran, root, symlinks=True)
    return root


def _object_path(root: Path, digest: str) -> Path:
    return root / ".mlcd" / "objects" / digest[:2] / digest[2:]


# guards against: the corrupt-database hint naming a command that does not exist
def test_doctor_on_a_healthy_project_exits_0(project: Path) -> None:
    result = mlcd(["doctor", "--json"], cwd=project)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["checked"]["lock outputs"] == 1
    assert report["checked"]["pointers"] == 1
    assert report["checked"]["run-cache entries"] == 1


# guards against: a lock that names an object the store lost, unnoticed until a restore fails
def test_doctor_names_an_object_the_lock_references_but_the_store_lacks(project: Path) -> None:
    lock = yaml.safe_load((project / "mlcd.lock").read_text(encoding="utf-8"))
    digest = lock["stages"]["train"]["outs"]["model.txt"]
    _object_path(project, digest).unlink()

    result = mlcd(["doctor"], cwd=project)

    assert result.returncode == 1, result.stderr
    assert "mlcd.lock: stage 'train': out 'model.txt'" in result.stdout
    assert digest[:12] in result.stdout
    assert "is not in the object store" in result.stdout
    assert "fix: run 'mlcd run' to rebuild it" in result.stdout
    assert "run-cache entry" in result.stdout  # the entry that made it names it too


# guards against: a database damaged in the middle reported as a traceback, or not at all
def test_doctor_reports_a_corrupted_database(project: Path) -> None:
    database = project / ".mlcd" / "mlcd.db"
    data = bytearray(database.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\xde\xad\xbe\xef" * 2048
    database.write_bytes(bytes(data))

    result = mlcd(["doctor"], cwd=project)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # which page the bytes land on (the schema grows) decides which check notices first
    assert "mlcd.db is damaged" in result.stdout or "mlcd.db cannot be opened" in result.stdout
    assert "restore .mlcd/mlcd.db from a backup" in result.stdout
    assert "run-cache entries were not checked" in result.stdout


# guards against: a tracked data file whose object is gone, noticed only by a teammate's pull
def test_doctor_names_a_pointer_whose_object_is_missing(project: Path) -> None:
    pointer = (project / "raw.csv.mlcd").read_text(encoding="utf-8")
    digest = next(
        line.split(":", 1)[1].strip() for line in pointer.splitlines() if "digest" in line
    )
    _object_path(project, digest).unlink()

    result = mlcd(["doctor", "--json"], cwd=project)

    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert [p["area"] for p in problems] == ["pointers"]
    assert "raw.csv.mlcd" in problems[0]["message"]
    assert "mlcd pull" in problems[0]["fix"]
