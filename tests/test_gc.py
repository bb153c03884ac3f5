"""`mlcd gc` and `mlcd verify` through the real CLI on a real project."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlcd.objects import LocalObjectStore
from mlcd.store import Store, runs
from tests.conftest import run_cli


def _stores(project: Path) -> tuple[Store, LocalObjectStore]:
    return Store("sqlite:///.mlcd/mlcd.db", root=project), LocalObjectStore(
        project / ".mlcd" / "objects"
    )


def test_gc_removes_only_unreferenced_objects(project: Path, tmp_path: Path) -> None:
    store, objects = _stores(project)
    store.dispose()
    kept_file = tmp_path / "kept.bin"
    kept_file.write_bytes(b"referenced by a run")
    kept = objects.put_file(kept_file)
    locked = objects.put_bytes(b"referenced by mlcd.lock")
    dropped = objects.put_bytes(b"nobody points here")
    with store.write() as conn:
        run_id = runs.create_run(conn)
        runs.add_artifacts(conn, run_id, [runs.ArtifactRef("output", "kept.bin", kept.hex)])
    store.dispose()
    (project / "mlcd.lock").write_text(f"stages:\n  s:\n    outs:\n      x: {locked.hex}\n")
    result = run_cli(["gc", "--grace", "0", "--json"], cwd=project)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["removed"] == [dropped.hex]
    assert objects.has(kept) and objects.has(locked) and not objects.has(dropped)


def test_verify_and_gc_report_a_corrupt_object(project: Path) -> None:
    store, objects = _stores(project)
    store.dispose()
    digest = objects.put_bytes(b"precious bytes" * 100)
    path = objects.path_of(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered bytes" * 100)
    result = run_cli(["verify", "--json"], cwd=project)
    assert result.returncode == 1
    assert digest.hex in result.stdout and "mlcd gc --verify" in result.stderr
    result = run_cli(["gc", "--verify", "--grace", "0", "--json"], cwd=project)
    assert result.returncode == 1
    assert json.loads(result.stdout)["corrupt"] == [digest.hex]
    assert not objects.has(digest)


def test_gc_after_a_run_reports_no_missing_objects(tmp_path: Path) -> None:
    # Guards against stage fingerprints in mlcd.lock being counted as missing objects.
    root = tmp_path / "fresh"
    root.mkdir()
    (root / "input.txt").write_text("hello\n")
    (root / "mlcd.yaml").write_text(
        "stages:\n"
        "  a:\n    cmd: cp input.txt a.txt\n    deps: [input.txt]\n    outs: [a.txt]\n"
        "  b:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
    )
    ran = run_cli(["run"], cwd=root)
    assert ran.returncode == 0, ran.stderr

    result = run_cli(["gc", "--grace", "0", "--json"], cwd=root)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["missing"] == []
    assert report["removed"] == []
    assert "missing" not in run_cli(["gc", "--grace", "0"], cwd=root).stdout
