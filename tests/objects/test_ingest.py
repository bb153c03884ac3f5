"""First tracking reads a new file once: the store copies and hashes in one pass, and the
digests are exactly those of a separate hash (identities never change with the fast path)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mlcd.digest import Digest, hash_file
from mlcd.objects import LocalObjectStore
from mlcd.objects.local import _SMALL, _WINDOW
from mlcd.pipeline.data import add_data
from mlcd.pipeline.statcache import StatCache

SIZES = [
    0,
    1,
    _SMALL - 1,  # the largest one-buffer file
    _SMALL,  # the smallest windowed copy
    3 * _WINDOW + 12345,  # several windows and a ragged tail
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("link", ["copy", "reflink", "hardlink"])
def test_one_pass_put_gives_the_digest_of_a_separate_hash(
    tmp_path: Path, size: int, link: str
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(size))
    expected = hash_file(source)
    store = LocalObjectStore(tmp_path / "objects", link=link)

    digest = store.put_file(source)

    assert digest == expected
    assert hash_file(store.path_of(digest)) == expected
    assert store.verify(digest)
    assert os.listdir(tmp_path / "objects" / "tmp") == []  # no temp file left behind
    # storing the same bytes again keeps one object and leaves nothing behind either
    copy = tmp_path / "again.bin"
    copy.write_bytes(source.read_bytes())
    assert store.put_file(copy) == expected
    assert os.listdir(tmp_path / "objects" / "tmp") == []


def test_a_folder_stored_in_one_pass_has_the_manifest_of_known_digests(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    (folder / "sub").mkdir(parents=True)
    for index in range(40):
        size = (index * 7919) % (300 * 1024)
        (folder / ("sub" if index % 3 else ".") / f"f{index:03d}.bin").write_bytes(os.urandom(size))
    (folder / "dup-a.bin").write_bytes(b"same bytes")
    (folder / "dup-b.bin").write_bytes(b"same bytes")
    known = {
        p.relative_to(folder).as_posix(): hash_file(p) for p in folder.rglob("*") if p.is_file()
    }

    one_pass = LocalObjectStore(tmp_path / "a").put_dir(folder)
    hashed_first = LocalObjectStore(tmp_path / "b").put_dir(folder, known=known)

    assert one_pass == hashed_first
    entries = LocalObjectStore(tmp_path / "a").read_manifest(one_pass)
    assert {e.path: e.digest for e in entries} == known


def test_data_add_records_what_the_store_hashed(tmp_path: Path) -> None:
    """The stat cache learns the digests the store computed: nothing is read twice, and a
    second add of unchanged data reads nothing."""
    root = tmp_path
    (root / "data" / "raw").mkdir(parents=True)
    for index in range(5):
        (root / "data" / "raw" / f"{index}.bin").write_bytes(os.urandom(1000 + index))
    (root / "data" / "big.bin").write_bytes(os.urandom(_SMALL + 5))
    past = time.time() - 60  # older than the stat cache's racy window
    for path in (root / "data").rglob("*.bin"):
        os.utime(path, (past, past))
    paths = [root / "data" / "raw", root / "data" / "big.bin"]
    objects = LocalObjectStore(root / ".mlcd" / "objects")
    with StatCache(root / ".mlcd" / "statcache.db") as cache:
        added = add_data(root, paths, objects, cache)
    assert [changed for _, changed in added] == [True, True]
    big = root / "data" / "big.bin"
    assert added[1][0].digest == hash_file(big).hex

    with StatCache(root / ".mlcd" / "statcache.db") as cache:
        # digests known without reading the files, and equal to what a hash gives
        assert cache.known(big, big.stat()) == hash_file(big).hex
        again = add_data(root, paths, objects, cache)
        assert [changed for _, changed in again] == [False, False]
        assert cache.dir_digest(root / "data" / "raw") == added[0][0].digest
    assert objects.has(Digest.parse(added[0][0].digest))


def test_a_large_file_from_another_filesystem_is_stored_through_the_fallback(
    tmp_path: Path,
) -> None:
    """``copy_file_range`` refuses most pairs of different filesystems (tmpfs → ext4 here):
    the windowed copy falls back to reading and writing, with the same digest."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp folder")
    source = shm / f"mlcd-test-{os.getpid()}.bin"
    try:
        source.write_bytes(os.urandom(2 * _WINDOW + 777))
        expected = hash_file(source)
        store = LocalObjectStore(tmp_path / "objects")
        assert store.put_file(source) == expected
        assert hash_file(store.path_of(expected)) == expected
    finally:
        source.unlink(missing_ok=True)
