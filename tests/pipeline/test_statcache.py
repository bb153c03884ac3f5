"""The stat cache: unchanged files are never read twice; any change is re-hashed."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from mlcd.digest import hash_file
from mlcd.objects import LocalObjectStore
from mlcd.objects.base import ManifestEntry, encode_manifest
from mlcd.pipeline.statcache import StatCache, manifest_bytes


def _age(path: Path, seconds: float = 10.0) -> None:
    """Backdate a file so its entry is not 'racy' (written in the same tick it was hashed)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def _folder(root: Path, count: int) -> Path:
    folder = root / "data"
    for index in range(count):
        path = folder / f"part-{index // 10}" / f"f{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(256) + str(index).encode())
        _age(path)
    return folder


def test_file_digest_matches_a_plain_hash(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 10_000)

    with StatCache(tmp_path / "stat.db") as cache:
        assert cache.file_digest(path) == hash_file(path).hex


def test_unchanged_files_are_not_hashed_again(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 200)
    with StatCache(tmp_path / "stat.db") as first:
        digest = first.dir_digest(folder)
        assert first.hashed_files == 200

    with StatCache(tmp_path / "stat.db") as second:
        assert second.dir_digest(folder) == digest
        assert second.hashed_files == 0


def test_changed_file_with_the_same_size_is_hashed_again(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 20)
    with StatCache(tmp_path / "stat.db") as cache:
        before = cache.dir_digest(folder)
    victim = folder / "part-1" / "f13.bin"
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))

    with StatCache(tmp_path / "stat.db") as cache:
        after = cache.dir_digest(folder)
        assert cache.hashed_files == 1
    assert after != before


def test_same_mtime_but_new_inode_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("one")
    _age(path)
    stamp = path.stat().st_mtime_ns
    with StatCache(tmp_path / "stat.db") as cache:
        cache.file_digest(path)

    replacement = tmp_path / "b.txt"
    replacement.write_text("two")
    os.utime(replacement, ns=(stamp, stamp))
    os.replace(replacement, path)

    with StatCache(tmp_path / "stat.db") as cache:
        assert cache.file_digest(path) == hash_file(path).hex
        assert cache.hashed_files == 1


def test_entry_hashed_in_the_same_tick_as_its_mtime_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "fresh.txt"
    path.write_text("just written")
    soon = (
        time.time() + 5
    )  # as if written right as it was hashed: a later write could keep the stat
    os.utime(path, (soon, soon))
    with StatCache(tmp_path / "stat.db") as cache:
        cache.file_digest(path)

    with StatCache(tmp_path / "stat.db") as cache:
        cache.file_digest(path)
        assert cache.hashed_files == 1


def test_dir_digest_equals_the_object_store_digest(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 30)
    (folder / "empty.txt").write_text("")
    objects = LocalObjectStore(tmp_path / "objects")

    with StatCache(tmp_path / "stat.db") as cache:
        assert cache.dir_digest(folder) == str(objects.put_dir(folder))


def test_manifest_bytes_match_the_object_store_encoding() -> None:
    entries = [("b/x", "ab" * 32, 3), ("a", "cd" * 32, 0), ("a b/ü", "ef" * 32, 12)]

    expected = encode_manifest(
        ManifestEntry.from_dict({"path": p, "digest": d, "size": s}) for p, d, s in entries
    )

    assert manifest_bytes(entries) == expected


def test_missing_path_has_no_digest(tmp_path: Path) -> None:
    with StatCache(tmp_path / "stat.db") as cache:
        assert cache.path_digest(tmp_path / "nope") is None


def test_damaged_cache_file_is_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    db.write_bytes(b"this is not a database" * 100)
    path = tmp_path / "a.txt"
    path.write_text("content")

    with StatCache(db) as cache:
        assert cache.file_digest(path) == hash_file(path).hex
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM stat").fetchone() == (1,)


def test_unchanged_folder_is_answered_from_its_listing_record(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 50)
    with StatCache(tmp_path / "stat.db") as cache:
        digest = cache.dir_digest(folder)
    with sqlite3.connect(tmp_path / "stat.db") as conn:
        conn.execute("DELETE FROM stat")  # only the folder record is left to answer from

    with StatCache(tmp_path / "stat.db") as cache:
        assert cache.dir_digest(folder) == digest
        assert cache.hashed_files == 0


def test_added_file_invalidates_the_folder_record(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 50)
    with StatCache(tmp_path / "stat.db") as cache:
        before = cache.dir_digest(folder)
    extra = folder / "part-0" / "new.bin"
    extra.write_bytes(b"new")
    _age(extra)

    with StatCache(tmp_path / "stat.db") as cache:
        after = cache.dir_digest(folder)
        assert cache.hashed_files == 1
    assert after != before
    assert after == str(LocalObjectStore(tmp_path / "objects").put_dir(folder))
