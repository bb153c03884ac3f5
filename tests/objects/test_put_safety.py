"""Crash safety and checks of the batched put: a writer killed mid-way leaves no partial
object under its final name, what the store keeps hashes to its name and is read-only, and
files that change or are not regular files are refused."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlcd.digest import hash_file
from mlcd.errors import ObjectError
from mlcd.objects import LocalObjectStore
from mlcd.objects.local import _SMALL
from mlcd.pipeline.statcache import walk_files

_WRITER = textwrap.dedent(
    """
    import sys
    from mlcd.objects import LocalObjectStore

    store = LocalObjectStore(sys.argv[1])
    store.put_dir(sys.argv[2])
    store.put_file(sys.argv[3])
    print("done", flush=True)
    """
)


def _check_store(store: LocalObjectStore) -> int:
    """Every object under its final name hashes to that name and is read-only."""
    count = 0
    for digest in store.iter_digests():
        path = store.path_of(digest)
        assert hash_file(path).hex == digest.hex, f"{path} is not what its name says"
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
        count += 1
    return count


@pytest.mark.parametrize("moment", ["while staging", "late"])
def test_a_writer_killed_mid_put_leaves_no_partial_object(tmp_path: Path, moment: str) -> None:
    """A real process storing a folder and a large file is killed (SIGKILL) once it has
    temp files in the store: objects under their final names are whole (their bytes hash to
    their names), and the leftovers are only temp files, which clean_staging removes."""
    folder = tmp_path / "data"
    folder.mkdir()
    for index in range(300):
        (folder / f"{index:03d}.bin").write_bytes(os.urandom(64 * 1024))
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(24):
            handle.write(os.urandom(8 * 1024 * 1024))
    root = tmp_path / "objects"
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), str(folder), str(big)],
        stdout=subprocess.DEVNULL,
    )
    staging = root / "tmp"
    deadline = time.monotonic() + 60
    seen = 0
    wanted = 1 if moment == "while staging" else 50
    while process.poll() is None and time.monotonic() < deadline:
        try:
            seen = len(os.listdir(staging))
        except FileNotFoundError:
            seen = 0
        if seen >= wanted or (moment == "late" and any(root.glob("??/*"))):
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the writer finished before it was killed"

    store = LocalObjectStore(root)
    _check_store(store)
    leftovers = os.listdir(staging) if staging.is_dir() else []
    assert store.clean_staging() == len(leftovers)
    # a new put of the same data completes, and the store is whole
    store.put_dir(folder)
    store.put_file(big)
    assert _check_store(store) == 300 + 1 + 1  # files, manifest, big file
    assert os.listdir(staging) == []


def test_stored_objects_are_read_only_and_nothing_is_staged_for_known_content(
    tmp_path: Path,
) -> None:
    """Small files (one buffer), a large file (windowed copy) and a folder: every object is
    read-only, and a second put of the same content leaves the store as it was."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 1000)
    (folder / "b.bin").write_bytes(b"a" * 1000)  # same content twice in one batch
    (folder / "c.bin").write_bytes(b"")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(_SMALL + 7))
    store = LocalObjectStore(tmp_path / "objects")
    first = store.put_dir(folder), store.put_file(big), store.put_file(folder / "a.bin")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "objects").glob("??/*")}
    assert _check_store(store) == 4  # a (= b), c, the manifest, big
    second = store.put_dir(folder), store.put_file(big), store.put_file(folder / "a.bin")
    assert first == second
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "objects").glob("??/*")}
    assert after == before
    assert os.listdir(tmp_path / "objects" / "tmp") == []


def test_put_tree_returns_the_manifest_and_uses_the_given_listing(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("x")
    (folder / "a.b").write_text("ab")
    (folder / "a" / "c").mkdir(parents=True)
    (folder / "a" / "c" / "d").write_text("d")
    store = LocalObjectStore(tmp_path / "objects")
    digest, entries = store.put_tree(folder, walk_files(str(folder)))
    assert digest == LocalObjectStore(tmp_path / "other").put_dir(folder)
    assert entries == store.read_manifest(digest)
    assert [e.path for e in entries] == sorted(e.path for e in entries)


def test_a_file_changed_since_it_was_listed_is_refused(tmp_path: Path) -> None:
    """The manifest takes sizes from the listing: a file rewritten after it was listed
    would be stored with another size, so the put refuses it and stores no manifest."""
    folder = tmp_path / "data"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.bin").write_bytes(b"old")
    listing = walk_files(str(folder))
    time.sleep(0.01)
    (folder / "1.bin").write_bytes(b"new and longer")
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ObjectError, match="changed while it was being stored"):
        store.put_tree(folder, listing)
    assert not any(e.is_dir for e in store.iter_digests())
    assert os.listdir(tmp_path / "objects" / "tmp") == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")
    os.mkfifo(folder / "pipe")
    store = LocalObjectStore(tmp_path / "objects")
    items = [(folder / "a.bin", None), (folder / "pipe", None)]
    with pytest.raises(ObjectError, match="not a file"):
        store.put_files(items)
    with pytest.raises(ObjectError, match="not a file"):
        store.put_files([(folder / "missing", None), (folder / "a.bin", None)])
