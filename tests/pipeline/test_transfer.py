"""`mlcd push` / `mlcd pull`: objects and run-cache entries through a remote folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcd.digest import hash_file
from tests.conftest import run_cli
from tests.pipeline.conftest import (
    CHAIN,
    CHAIN_FILES,
    calls,
    outcomes,
    run_json,
    stage_env,
    write,
)

CONFIG = (
    CHAIN.replace("deps: [input.txt]", "deps: [input.txt, raw]")
    + "\nremotes:\n  origin: {url: ../remote}\n"
)
COMMITTED = ["mlcd.yaml", "params.yaml", "input.txt", "raw.mlcd", "mlcd.lock"]


@pytest.fixture(scope="module")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Made once per module by the real CLI: ``ran`` (data add, run) and ``pushed`` (the same,
    then push to ``../remote``); each a folder holding ``origin`` (and ``remote``)."""
    ran = tmp_path_factory.mktemp("transfer-ran")
    root = ran / "origin"
    root.mkdir()
    write(root, {"mlcd.yaml": CONFIG, **CHAIN_FILES})
    write(root, {"raw/a.csv": "x\n1\n", "raw/b.csv": "x\n2\n"})
    added = run_cli(["data", "add", "raw"], cwd=root, env=stage_env())
    assert added.returncode == 0, added.stderr
    done = run_cli(["run", "--json"], cwd=root, env=stage_env())
    assert done.returncode == 0, done.stderr
    pushed = tmp_path_factory.mktemp("transfer-pushed")
    shutil.copytree(root, pushed / "origin", symlinks=True)
    result = run_cli(["push"], cwd=pushed / "origin", env=stage_env())
    assert result.returncode == 0, result.stderr
    return {"ran": ran, "pushed": pushed}


@pytest.fixture
def origin_from(_templates: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """``origin_from("ran" | "pushed")``: that project (and its remote) copied into the test's
    folder; nothing in them names their folder, so the copy is what the CLI would make here."""

    def copy(which: str) -> Path:
        for item in _templates[which].iterdir():
            shutil.copytree(item, tmp_path / item.name, symlinks=True)
        return tmp_path / "origin"

    return copy


def _clone(origin: Path, name: str) -> Path:
    """What a colleague gets from git: the committed files, no data, no .mlcd."""
    clone = origin.parent / name
    clone.mkdir()
    for relative in COMMITTED:
        shutil.copy2(origin / relative, clone / relative)
    return clone


def test_push_then_pull_in_a_fresh_clone_restores_everything_without_running(
    origin_from, mlcd
) -> None:
    origin = origin_from("ran")

    pushed = mlcd(origin, "push", "--json")
    clone = _clone(origin, "clone")
    pulled = mlcd(clone, "pull", "--json")
    document = run_json(mlcd, clone)

    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["entries_copied"] == 3
    assert pulled.returncode == 0, pulled.stderr
    report = json.loads(pulled.stdout)
    assert sorted(report["restored"]) == ["a.txt", "c.txt", "metrics_b.json", "out_b", "raw"]
    assert (clone / "raw" / "b.csv").read_text() == "x\n2\n"
    assert set(outcomes(document).values()) == {"skipped"}
    assert calls(clone) == []


def test_second_push_sends_nothing(origin_from, mlcd) -> None:
    origin = origin_from("pushed")

    again = json.loads(mlcd(origin, "push", "--json").stdout)

    assert again["objects_copied"] == 0
    assert again["entries_copied"] == 0
    assert again["objects_present"] > 0


def test_pulled_run_cache_restores_a_stage_run_elsewhere(origin_from, mlcd) -> None:
    origin = origin_from("ran")
    write(origin, {"params.yaml": "a: 1\nb:\n  size: 11\n"})
    run_json(mlcd, origin)
    assert mlcd(origin, "push", "--all").returncode == 0  # both sizes' entries

    clone = _clone(origin, "clone")  # committed at size 11
    mlcd(clone, "pull")
    write(clone, {"params.yaml": "a: 1\nb:\n  size: 10\n"})  # what origin ran first
    mlcd(clone, "pull")
    document = run_json(mlcd, clone)

    assert outcomes(document) == {"a": "skipped", "b": "cached", "c": "cached"}
    assert calls(clone) == []
    assert (clone / "out_b" / "b.txt").read_text() == "  size: 10\n"


def test_pull_keeps_locally_modified_files_unless_forced(origin_from, mlcd) -> None:
    origin = origin_from("pushed")
    clone = _clone(origin, "clone")
    mlcd(clone, "pull")
    (clone / "a.txt").write_text("mine\n")

    kept = json.loads(mlcd(clone, "pull", "--json").stdout)
    forced = json.loads(mlcd(clone, "pull", "--force", "--json").stdout)

    assert kept["skipped_modified"] == ["a.txt"]
    assert forced["restored"] == ["a.txt"]
    assert (clone / "a.txt").read_text() == "a=hello\n"


def test_corrupt_object_on_the_remote_is_refused_on_arrival(origin_from, mlcd) -> None:
    origin = origin_from("pushed")
    digest = hash_file(origin / "raw" / "a.csv").hex
    blob = origin.parent / "remote" / digest[:2] / digest[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered\n")

    clone = _clone(origin, "clone")
    result = mlcd(clone, "pull")

    assert result.returncode == 1  # skipped and reported (issue 20): a check found corruption
    assert f"object {digest}" in result.stderr and "is corrupt" in result.stderr
    assert not (clone / ".mlcd" / "objects" / digest[:2] / digest[2:]).exists()


def test_push_names_objects_missing_locally(origin_from, mlcd) -> None:
    origin = origin_from("ran")
    digest = hash_file(origin / "a.txt").hex
    (origin / ".mlcd" / "objects" / digest[:2] / digest[2:]).unlink()

    result = mlcd(origin, "push")

    assert result.returncode == 3
    assert "1 object(s) are not locally" in result.stderr
    assert digest[:12] in result.stderr


def test_push_without_a_remote_says_how_to_declare_one(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)
    run_json(mlcd, root)

    result = mlcd(root, "push")

    assert result.returncode == 2
    assert "declare one under 'remotes:' in mlcd.yaml" in result.stderr
