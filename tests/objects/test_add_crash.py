"""``mlcd data add`` and the durability of what it writes: a real ``mlcd data add`` killed
(SIGKILL) at any moment leaves no object that is not what its name says and no pointer file
naming an object the store lacks; and the fast path (no pydantic, no SQLAlchemy) stores,
points and records exactly what the project path does, or declines and does nothing."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcd.digest import Digest, hash_file
from mlcd.objects import LocalObjectStore, local
from mlcd.objects.local import _SMALL, _WINDOW
from mlcd.pipeline.data import add_data_fast, read_pointer
from mlcd.pipeline.statcache import StatCache, walk_files
from tests.conftest import run_cli

CONFIG = "stages: {}\n"


def _project(root: Path, config: str = CONFIG) -> Path:
    root.mkdir(parents=True)
    (root / "mlcd.yaml").write_text(config)
    # the metadata database, then a full check of mlcd.yaml (remembered for the fast path
    # once .mlcd/ exists), as in a project in use
    for args in (["gc", "--dry-run"], ["gc", "--dry-run"]):
        result = run_cli(args, cwd=root)
        assert result.returncode == 0, result.stderr
    assert (root / ".mlcd" / "config.validated.json").is_file()
    return root


def _data(root: Path, files: int, size: int, big_mib: int) -> None:
    folder = root / "raw"
    for index in range(files):
        sub = folder / f"part-{index // 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{index:04d}.bin").write_bytes(os.urandom(size))
    with open(root / "big.bin", "wb") as handle:
        for _ in range(big_mib):
            handle.write(os.urandom(1024 * 1024))


def _whole_objects(store: LocalObjectStore) -> set[str]:
    """Every object under its final name hashes to that name and is read-only."""
    found = set()
    for digest in store.iter_digests():
        path = store.path_of(digest)
        assert hash_file(path).hex == digest.hex, f"{path} is not what its name says"
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
        found.add(digest.hex)
    return found


def _pointed_objects(root: Path, store: LocalObjectStore) -> set[str]:
    """The objects the pointer files name (a folder's manifest and its files)."""
    named = set()
    for pointer_file in (p for p in root.glob("*.mlcd") if p.is_file()):
        pointer = read_pointer(root, pointer_file)
        digest = Digest(pointer.digest.removesuffix(".dir"))
        named.add(digest.hex)
        if pointer.digest.endswith(".dir"):
            named.update(e.digest.hex for e in store.read_manifest(digest))
    return named


_FAST = "import sys; from mlcd.pipeline.data import add_data_fast; add_data_fast(sys.argv[1:])"


def _kill_when(root: Path, ready: str, via: str) -> int | None:
    """Start ``mlcd data add raw big.bin`` (``via`` the CLI or ``add_data_fast``), SIGKILL it
    once ``ready`` holds; returns its exit code (negative: killed)."""
    objects = root / ".mlcd" / "objects"
    argv = ["-m", "mlcd.cli.main", "data", "add"] if via == "cli" else ["-c", _FAST]
    process = subprocess.Popen(
        [sys.executable, *argv, "raw", "big.bin"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            staged = len(os.listdir(objects / "tmp"))
        except FileNotFoundError:
            staged = 0
        if ready == "staging" and staged >= 1:
            break
        if ready == "stored" and any(objects.glob("??/*")):
            break
        if ready == "pointer" and (root / "raw.mlcd").exists():
            break
        time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60)


@pytest.mark.parametrize("via", ["cli", "fast"])
@pytest.mark.parametrize("ready", ["staging", "stored", "pointer"])
def test_data_add_killed_at_any_moment_leaves_no_wrong_object_nor_dangling_pointer(
    tmp_path: Path, ready: str, via: str
) -> None:
    """A real ``mlcd data add`` of a folder (600 files) and a 40 MiB file is killed with
    SIGKILL while it stages temp files, once objects have their names, or once the first
    pointer exists: every object kept hashes to its name, every object a pointer names is
    there, leftovers are temp files only, and adding again completes a whole store."""
    root = _project(tmp_path / "proj")
    _data(root, files=600, size=64 * 1024, big_mib=40)

    code = _kill_when(root, ready, via)

    store = LocalObjectStore(root / ".mlcd" / "objects")
    kept = _whole_objects(store)
    assert _pointed_objects(root, store) <= kept, "a pointer names an object not stored"
    if ready == "staging":
        assert code == -signal.SIGKILL, "the add finished before it was killed"
    staging = root / ".mlcd" / "objects" / "tmp"
    leftovers = os.listdir(staging) if staging.is_dir() else []
    assert store.clean_staging() == len(leftovers)

    result = run_cli(["data", "add", "raw", "big.bin"], cwd=root)
    assert result.returncode == 0, result.stderr
    kept = _whole_objects(store)
    pointed = _pointed_objects(root, store)
    assert pointed <= kept
    assert len(pointed) == 600 + 1 + 1  # files, manifest, big file (random: all distinct)


def test_fast_add_stores_points_and_records_what_the_project_path_does(tmp_path: Path) -> None:
    """``add_data_fast`` (stdlib SQLite, no pydantic) and ``mlcd data add`` on the same data:
    the same pointers and objects, and one finished ``data`` run with the outputs."""
    fast = _project(tmp_path / "fast")
    usual = _project(tmp_path / "usual")
    for root in (fast, usual):
        (root / "raw" / "sub").mkdir(parents=True)
        (root / "raw" / "a.csv").write_text("x\n1\n")
        (root / "raw" / "sub" / "b.csv").write_text("x\n2\n")
        (root / "big.bin").write_bytes(b"\x01" * 300_000)

    added = add_data_fast([fast / "raw", fast / "big.bin"], start=fast)
    env = {"MLCD_NO_FAST_STORE": "1"}
    result = run_cli(["data", "add", "raw", "big.bin", "--json"], cwd=usual, env=env)

    assert added is not None and result.returncode == 0, result.stderr
    expected = {item["path"]: item["digest"] for item in json.loads(result.stdout)["added"]}
    assert {p.path: p.digest for p, changed in added if changed} == expected
    for name in ("raw.mlcd", "big.bin.mlcd"):
        assert (fast / name).read_text() == (usual / name).read_text()
    assert (fast / ".gitignore").read_text() == (usual / ".gitignore").read_text()
    assert _whole_objects(LocalObjectStore(fast / ".mlcd" / "objects")) == _whole_objects(
        LocalObjectStore(usual / ".mlcd" / "objects")
    )
    with sqlite3.connect(fast / ".mlcd" / "mlcd.db") as conn:
        runs = conn.execute("SELECT id, name, status FROM runs WHERE kind = 'data'").fetchall()
        assert [(name, status) for _, name, status in runs] == [("data add", "finished")]
        outputs = conn.execute(
            "SELECT role, path, digest FROM run_artifacts WHERE run_id = ? ORDER BY path",
            (runs[0][0],),
        ).fetchall()
    assert outputs == sorted(("output", path, digest) for path, digest in expected.items())
    # and mlcd's own view of the project agrees: the data is tracked and unchanged
    status = run_cli(["data", "status", "--json"], cwd=fast)
    assert status.returncode == 0, status.stderr
    assert {d["path"]: d["status"] for d in json.loads(status.stdout)["data"]} == {
        "big.bin": "unchanged",
        "raw": "unchanged",
    }


def test_fast_add_declines_and_does_nothing_when_it_cannot_be_sure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlcd.yaml edited since its last full check, a disabled fast store, a remote object
    store: None, and no pointer, object or run."""
    root = _project(tmp_path / "proj")
    (root / "a.txt").write_text("a")
    objects = root / ".mlcd" / "objects"

    (root / "mlcd.yaml").write_text(CONFIG + "# edited\n")
    assert add_data_fast([root / "a.txt"], start=root) is None
    (root / "mlcd.yaml").write_text(CONFIG)
    monkeypatch.setenv("MLCD_NO_FAST_STORE", "1")
    assert add_data_fast([root / "a.txt"], start=root) is None
    monkeypatch.delenv("MLCD_NO_FAST_STORE")
    monkeypatch.setenv("MLCD_ARTIFACTS", "s3://bucket/objects")
    assert add_data_fast([root / "a.txt"], start=root) is None
    monkeypatch.delenv("MLCD_ARTIFACTS")

    assert not (root / "a.txt.mlcd").exists() and not any(objects.glob("??/*"))
    with sqlite3.connect(root / ".mlcd" / "mlcd.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE kind = 'data'").fetchone() == (0,)
    assert add_data_fast([root / "a.txt"], start=root) is not None  # all clear again


def test_fast_add_honours_cache_link(tmp_path: Path) -> None:
    """``cache.link: hardlink`` read from the validated mlcd.yaml: the object is the file."""
    root = _project(tmp_path / "proj", "cache:\n  link: hardlink\nstages: {}\n")
    (root / "a.bin").write_bytes(os.urandom(1000))

    added = add_data_fast([root / "a.bin"], start=root)

    assert added is not None
    stored = LocalObjectStore(root / ".mlcd" / "objects").path_of(hash_file(root / "a.bin"))
    assert stored.stat().st_ino == (root / "a.bin").stat().st_ino


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "in-kernel"])
@pytest.mark.parametrize(
    "size",
    [_SMALL, _WINDOW * 2, _WINDOW * 2 + 1, _WINDOW + 4095, _SMALL + 4096 * 3 + 17],
)
def test_large_files_are_stored_whole_with_or_without_direct_writes(
    tmp_path: Path, size: int, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large files, read, hashed and written window by window with O_DIRECT (the last partial
    block through the cache), or copied in-kernel where O_DIRECT is refused: the object's
    bytes are the file's and its name their digest, whatever the size's alignment."""
    monkeypatch.setattr(local, "_DIRECT_WRITES", direct)
    source = tmp_path / "big.bin"
    with open(source, "wb") as handle:
        handle.write(os.urandom(size))
    expected = hash_file(source)
    store = LocalObjectStore(tmp_path / "objects")

    assert store.put_file(source) == expected

    stored = store.path_of(expected)
    assert stored.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert os.listdir(tmp_path / "objects" / "tmp") == []


SMALL_SIZES = [
    local._DIRECT_MIN - 1,  # the largest file written through the page cache
    local._DIRECT_MIN,  # the smallest written directly
    local._DIRECT_MIN + 4096 + 17,  # whole blocks directly, a ragged tail through the cache
    256 * 1024,
]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "cached"])
def test_a_folder_of_small_files_is_stored_whole_with_or_without_direct_writes(
    tmp_path: Path, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files are read into one aligned buffer, hashed there and written from it, with
    O_DIRECT from ``_DIRECT_MIN`` bytes up (else through the page cache): every object holds
    its file's bytes, is read-only and is named by their digest, in a batch as alone."""
    monkeypatch.setattr(local, "_DIRECT_WRITES", direct)
    folder = tmp_path / "raw"
    folder.mkdir()
    for index, size in enumerate(SMALL_SIZES * 3):
        (folder / f"{index:02d}.bin").write_bytes(os.urandom(size))
    store = LocalObjectStore(tmp_path / "objects")

    manifest = store.read_manifest(store.put_dir(folder))
    single = folder / "alone.bin"
    single.write_bytes(os.urandom(local._DIRECT_MIN + 1))
    alone = store.put_file(single)

    assert len(manifest) == len(SMALL_SIZES) * 3
    for entry in manifest:
        assert store.path_of(entry.digest).read_bytes() == (folder / entry.path).read_bytes()
    assert store.path_of(alone).read_bytes() == single.read_bytes()
    assert _whole_objects(store) >= {entry.digest.hex for entry in manifest} | {alone.hex}
    assert os.listdir(tmp_path / "objects" / "tmp") == []


@pytest.mark.parametrize("size", [local._DIRECT_MIN + 17, _SMALL + 4096 * 3 + 17])
def test_a_filesystem_refusing_direct_io_gets_the_same_objects(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where O_DIRECT is refused, when the file is opened (as some kernels do after creating
    it) or at the first write (an alignment the filesystem does not take), the store writes
    through the page cache instead: the same object, nothing left behind."""
    real_open, real_pwrite = os.open, os.pwrite
    refused: list[str] = []

    def open_refusing(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if flags & os.O_DIRECT and not refused:
            real_open(path, flags & ~os.O_DIRECT, *args)  # created, then refused
            refused.append("open")
            raise OSError(errno.EINVAL, "O_DIRECT refused")
        return real_open(path, flags, *args)

    def pwrite_refusing(fd: int, data: bytes, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and "write" not in refused:
            refused.append("write")
            raise OSError(errno.EINVAL, "alignment refused")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "open", open_refusing)
    monkeypatch.setattr(os, "pwrite", pwrite_refusing)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(size))
    store = LocalObjectStore(tmp_path / "objects")

    first = store.put_file(source)  # refused at the open
    source.write_bytes(os.urandom(size))
    second = store.put_file(source)  # opened directly, refused at the first write

    monkeypatch.undo()
    assert refused == ["open", "write"]
    assert first == hash_file(store.path_of(first)) and store.verify(first)
    assert second == hash_file(source) and store.path_of(second).read_bytes() == source.read_bytes()
    assert os.listdir(tmp_path / "objects" / "tmp") == []


def test_a_folder_added_is_not_read_again_and_a_changed_file_is(tmp_path: Path) -> None:
    """The stat cache learns each new file's digest under the stat it was listed and read
    with: adding the folder again reads nothing (no object is written again), and a file
    rewritten since is hashed again and stored."""
    root = _project(tmp_path / "proj")
    _data(root, files=50, size=4096, big_mib=0)
    time.sleep(0.1)  # the files older than the stat cache's racy window when recorded
    first = add_data_fast([root / "raw"], start=root)
    assert first is not None
    objects = root / ".mlcd" / "objects"
    before = {p: p.stat().st_mtime_ns for p in objects.glob("??/*")}
    listing = walk_files(str(root / "raw"))
    with StatCache(root / ".mlcd" / "statcache.db") as cache:
        assert len(cache.known_below(root / "raw", listing)) == 50  # nothing to read again

    again = add_data_fast([root / "raw"], start=root)

    assert again is not None and again[0][0].digest == first[0][0].digest and not again[0][1]
    assert {p: p.stat().st_mtime_ns for p in objects.glob("??/*")} == before
    changed = root / "raw" / "part-0" / "0007.bin"
    changed.write_bytes(b"new bytes")
    third = add_data_fast([root / "raw"], start=root)
    assert third is not None and third[0][1] and third[0][0].digest != first[0][0].digest
    assert LocalObjectStore(objects).has(hash_file(changed))
