"""`mlcd data add` / `mlcd data status`: data no stage produces, versioned by pointer files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlcd.digest import hash_file
from mlcd.objects import LocalObjectStore
from tests.pipeline.conftest import CHAIN, CHAIN_FILES, write

CONFIG = CHAIN.replace("deps: [input.txt]", "deps: [input.txt, raw]")


def _raw(root: Path) -> None:
    write(root, {"raw/a.csv": "x,y\n1,2\n", "raw/sub/b.csv": "x,y\n3,4\n", "big.bin": ""})
    (root / "big.bin").write_bytes(os.urandom(300_000))


def test_add_folder_and_file_writes_pointers_and_stores_objects(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)

    result = mlcd(root, "data", "add", "raw", "big.bin", "--json")

    assert result.returncode == 0, result.stderr
    added = {item["path"]: item for item in json.loads(result.stdout)["added"]}
    assert added["raw"]["files"] == 2 and added["raw"]["digest"].endswith(".dir")
    assert added["big.bin"]["digest"] == hash_file(root / "big.bin").hex
    pointer = (root / "raw.mlcd").read_text()
    assert "path: raw\n" in pointer and f"digest: {added['raw']['digest']}\n" in pointer
    objects = LocalObjectStore(root / ".mlcd" / "objects")
    assert objects.has(hash_file(root / "raw" / "sub" / "b.csv"))
    assert objects.has(hash_file(root / "big.bin"))
    assert (root / ".gitignore").read_text().splitlines() == ["/raw", "/big.bin"]


def test_data_status_reports_unchanged_modified_and_missing(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    assert mlcd(root, "data", "add", "raw", "big.bin").returncode == 0

    clean = mlcd(root, "data", "status", "--json")
    (root / "raw" / "a.csv").write_text("x,y\n1,5\n")
    (root / "big.bin").unlink()
    changed = mlcd(root, "data", "status")
    check = mlcd(root, "data", "status", "--check")
    overall = mlcd(root, "status")

    assert {d["status"] for d in json.loads(clean.stdout)["data"]} == {"unchanged"}
    assert "modified  raw" in changed.stdout
    assert "missing   big.bin" in changed.stdout
    assert check.returncode == 1
    assert "raw: tracked data modified" in overall.stdout
    assert "big.bin: tracked data missing" in overall.stdout


def test_readding_unchanged_data_changes_nothing(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    mlcd(root, "data", "add", "raw")
    before = (root / "raw.mlcd").stat().st_mtime_ns

    again = json.loads(mlcd(root, "data", "add", "raw", "--json").stdout)

    assert again["added"][0]["changed"] is False
    assert (root / "raw.mlcd").stat().st_mtime_ns == before


def test_changed_tracked_data_makes_its_consumers_stale(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    mlcd(root, "data", "add", "raw")
    assert mlcd(root, "run").returncode == 0

    (root / "raw" / "new.csv").write_text("x\n9\n")
    mlcd(root, "data", "add", "raw")
    status = mlcd(root, "status")

    assert "a: stale" in status.stdout
    assert "dep changed: raw" in status.stdout


def test_stage_outputs_cannot_be_added(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    assert mlcd(root, "run").returncode == 0

    result = mlcd(root, "data", "add", "out_b/b.txt")

    assert result.returncode == 2
    assert "'out_b/b.txt' overlaps 'out_b', an output of stage 'b'" in result.stderr


def test_missing_and_outside_paths_are_refused(make_project, mlcd, tmp_path: Path) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    (tmp_path / "elsewhere.csv").write_text("x\n")

    missing = mlcd(root, "data", "add", "nothing.csv")
    outside = mlcd(root, "data", "add", str(tmp_path / "elsewhere.csv"))

    assert missing.returncode == 2
    assert "cannot track 'nothing.csv': no such file or folder" in missing.stderr
    assert outside.returncode == 2
    assert "is outside the project" in outside.stderr


def test_nested_tracking_is_refused(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    mlcd(root, "data", "add", "raw")

    result = mlcd(root, "data", "add", "raw/sub")

    assert result.returncode == 2
    assert "'raw/sub' overlaps 'raw', which is tracked already" in result.stderr


def test_folder_holding_tracked_data_is_refused(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    mlcd(root, "data", "add", "raw/sub")

    result = mlcd(root, "data", "add", "raw")

    assert result.returncode == 2
    assert "'raw' contains 'raw/sub.mlcd', the pointer of tracked data" in result.stderr


def test_damaged_pointer_file_is_reported(make_project, mlcd) -> None:
    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    mlcd(root, "data", "add", "raw")
    (root / "raw.mlcd").write_text("path: raw\ndigest: not-a-digest\n")

    result = mlcd(root, "data", "status")

    assert result.returncode == 3
    assert "raw.mlcd is not a valid data pointer" in result.stderr


def test_added_data_is_recorded_and_survives_gc(make_project, mlcd, open_store) -> None:
    from sqlalchemy import select

    from mlcd.store import runs
    from mlcd.store.tables import runs as runs_table

    root = make_project(CONFIG, CHAIN_FILES)
    _raw(root)
    assert mlcd(root, "data", "add", "raw").returncode == 0

    collected = mlcd(root, "gc", "--grace", "0", "--json")
    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    with store.read() as conn:
        (run_id,) = conn.execute(
            select(runs_table.c.id).where(runs_table.c.kind == "data")
        ).scalars()
        artifacts = runs.artifacts_of(conn, run_id)

    assert collected.returncode == 0, collected.stderr
    assert [(a.role, a.path) for a in artifacts] == [("output", "raw")]
    objects = LocalObjectStore(root / ".mlcd" / "objects")
    assert objects.has(hash_file(root / "raw" / "a.csv"))
    assert objects.has(hash_file(root / "raw" / "sub" / "b.csv"))
