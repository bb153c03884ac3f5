"""`mlcd push` / `mlcd pull`: objects and run-cache entries through a remote folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mlcd.digest import hash_file
from tests.pipeline.conftest import CHAIN, CHAIN_FILES, calls, outcomes, run_json, write

CONFIG = (
    CHAIN.replace("deps: [input.txt]", "deps: [input.txt, raw]")
    + "\nremotes:\n  origin: {url: ../remote}\n"
)
COMMITTED = ["mlcd.yaml", "params.yaml", "input.txt", "raw.mlcd", "mlcd.lock"]


def _origin(make_project, mlcd) -> Path:
    root = make_project(CONFIG, CHAIN_FILES, name="origin")
    write(root, {"raw/a.csv": "x\n1\n", "raw/b.csv": "x\n2\n"})
    assert mlcd(root, "data", "add", "raw").returncode == 0
    run_json(mlcd, root)
    return root


def _clone(origin: Path, name: str) -> Path:
    """What a colleague gets from git: the committed files, no data, no .mlcd."""
    clone = origin.parent / name
    clone.mkdir()
    for relative in COMMITTED:
        shutil.copy2(origin / relative, clone / relative)
    return clone


def test_push_then_pull_in_a_fresh_clone_restores_everything_without_running(
    make_project, mlcd
) -> None:
    origin = _origin(make_project, mlcd)

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


def test_second_push_sends_nothing(make_project, mlcd) -> None:
    origin = _origin(make_project, mlcd)
    mlcd(origin, "push")

    again = json.loads(mlcd(origin, "push", "--json").stdout)

    assert again["objects_copied"] == 0
    assert again["entries_copied"] == 0
    assert again["objects_present"] > 0


def test_pulled_run_cache_restores_a_stage_run_elsewhere(make_project, mlcd) -> None:
    origin = _origin(make_project, mlcd)
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


def test_pull_keeps_locally_modified_files_unless_forced(make_project, mlcd) -> None:
    origin = _origin(make_project, mlcd)
    mlcd(origin, "push")
    clone = _clone(origin, "clone")
    mlcd(clone, "pull")
    (clone / "a.txt").write_text("mine\n")

    kept = json.loads(mlcd(clone, "pull", "--json").stdout)
    forced = json.loads(mlcd(clone, "pull", "--force", "--json").stdout)

    assert kept["skipped_modified"] == ["a.txt"]
    assert forced["restored"] == ["a.txt"]
    assert (clone / "a.txt").read_text() == "a=hello\n"


def test_corrupt_object_on_the_remote_is_refused_on_arrival(make_project, mlcd) -> None:
    origin = _origin(make_project, mlcd)
    mlcd(origin, "push")
    digest = hash_file(origin / "raw" / "a.csv").hex
    blob = origin.parent / "remote" / digest[:2] / digest[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered\n")

    clone = _clone(origin, "clone")
    result = mlcd(clone, "pull")

    assert result.returncode == 1  # skipped and reported (issue 20): a check found corruption
    assert f"object {digest}" in result.stderr and "is corrupt" in result.stderr
    assert not (clone / ".mlcd" / "objects" / digest[:2] / digest[2:]).exists()


def test_push_names_objects_missing_locally(make_project, mlcd) -> None:
    origin = _origin(make_project, mlcd)
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
