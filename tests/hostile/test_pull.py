"""Issue 20, item 7: one corrupt remote object or run-cache entry does not abort a pull.

The bad ones are skipped and reported (text and --json), everything else is restored, and the
exit code is 1 (a check found corrupt objects, as 'mlcd verify' does).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mlcd.digest import hash_file
from tests.conftest import run_cli
from tests.pipeline.conftest import (
    CHAIN,
    CHAIN_FILES,
    stage_env,
    write,
)
from tests.pipeline.conftest import mlcd as _mlcd

mlcd = _mlcd

CONFIG = (
    CHAIN.replace("deps: [input.txt]", "deps: [input.txt, raw]")
    + "\nremotes:\n  origin: {url: ../remote}\n"
)
COMMITTED = ["mlcd.yaml", "params.yaml", "input.txt", "raw.mlcd", "mlcd.lock"]


@pytest.fixture(scope="module")
def _pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project that ran and pushed to ``../remote``, made once per module by the real CLI."""
    base = tmp_path_factory.mktemp("pull-origin")
    root = base / "origin"
    root.mkdir()
    write(root, {"mlcd.yaml": CONFIG, **CHAIN_FILES})
    write(root, {"raw/a.csv": "x\n1\n", "raw/b.csv": "x\n2\n"})
    for args in (["data", "add", "raw"], ["run", "--json"], ["push"]):
        result = run_cli(args, cwd=root, env=stage_env())
        assert result.returncode == 0, result.stderr
    return base


@pytest.fixture
def origin(_pushed: Path, tmp_path: Path) -> Path:
    """The pushed project and its remote copied into the test's folder (nothing in them names
    their folder but the stat cache, which just misses)."""
    for item in _pushed.iterdir():
        shutil.copytree(item, tmp_path / item.name, symlinks=True)
    return tmp_path / "origin"


def _clone(origin: Path) -> Path:
    clone = origin.parent / "clone"
    clone.mkdir()
    for relative in COMMITTED:
        shutil.copy2(origin / relative, clone / relative)
    return clone


def _tamper(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_corrupt_remote_object_is_skipped_and_the_rest_restored(origin: Path, mlcd) -> None:
    # Guards against one tampered blob on the remote aborting the whole pull.
    digest = hash_file(origin / "raw" / "a.csv").hex
    _tamper(origin.parent / "remote" / digest[:2] / digest[2:], b"tampered\n")
    clone = _clone(origin)

    text = mlcd(clone, "pull")
    shutil.rmtree(clone / ".mlcd")
    for path in ["a.txt", "c.txt", "metrics_b.json", "out_b"]:
        (clone / path).unlink() if (clone / path).is_file() else shutil.rmtree(clone / path)
    as_json = mlcd(clone, "pull", "--json")

    assert text.returncode == 1, text.stderr
    assert digest[:12] in text.stdout + text.stderr and "raw" in text.stdout
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert sorted(report["restored"]) == ["a.txt", "c.txt", "metrics_b.json", "out_b"]
    assert [(b["kind"], b["id"], b["paths"]) for b in report["bad"]] == [
        ("object", digest, ["raw"])
    ]
    assert "corrupt" in report["bad"][0]["problem"]
    assert not (clone / "raw").exists()
    assert not (clone / ".mlcd" / "objects" / digest[:2] / digest[2:]).exists()
    assert (clone / "out_b" / "b.txt").read_text() == "  size: 10\n"


def test_a_corrupt_run_cache_entry_is_skipped_and_the_rest_restored(origin: Path, mlcd) -> None:
    # Guards against one malformed run-cache entry on the remote aborting the whole pull.
    entries = sorted((origin.parent / "remote" / "runcache").glob("*.json"))
    _tamper(entries[0], b"{not json")
    clone = _clone(origin)

    result = mlcd(clone, "pull", "--json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [(b["kind"], b["id"]) for b in report["bad"]] == [("run-cache entry", entries[0].stem)]
    assert report["entries_copied"] == 2
    assert sorted(report["restored"]) == ["a.txt", "c.txt", "metrics_b.json", "out_b", "raw"]


def test_a_run_cache_entry_with_an_unsafe_output_is_skipped_exit_2(origin: Path, mlcd) -> None:
    # Guards against a crafted run-cache entry on the remote naming a path outside the project.
    fingerprint = "f" * 64
    entry = {"fingerprint": fingerprint, "stage": "a", "outputs": {"../evil.txt": "0" * 64}}
    (origin.parent / "remote" / "runcache" / f"{fingerprint}.json").write_text(json.dumps(entry))
    clone = _clone(origin)

    result = mlcd(clone, "pull", "--json")

    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert [(b["kind"], b["id"], b["unsafe"]) for b in report["bad"]] == [
        ("run-cache entry", fingerprint, True)
    ]
    assert "'../evil.txt'" in report["bad"][0]["problem"]
    assert sorted(report["restored"]) == ["a.txt", "c.txt", "metrics_b.json", "out_b", "raw"]
