"""``cache.link``: files come into and out of the local store copied, cloned or hard-linked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlcd.digest import hash_file
from mlcd.errors import ObjectError
from mlcd.objects import LocalObjectStore, open_object_store
from tests.conftest import run_cli


def _payload(path: Path, size: int = 9 * 1024 * 1024) -> Path:
    """Above the threaded-hash threshold, so the windowed hash is exercised too."""
    path.write_bytes(os.urandom(size))
    return path


def test_hardlink_mode_stores_and_restores_without_copying(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects", link="hardlink")
    source = _payload(tmp_path / "data.bin")
    digest = store.put_file(source)
    # one inode: the project file and the object, read-only so editors refuse to write it
    assert os.stat(source).st_ino == os.stat(store.path_of(digest)).st_ino
    assert not os.stat(source).st_mode & stat.S_IWUSR
    restored = tmp_path / "restored" / "data.bin"
    store.get_file(digest, restored)
    assert os.stat(restored).st_ino == os.stat(store.path_of(digest)).st_ino
    assert not os.stat(store.path_of(digest)).st_mode & stat.S_IWUSR


def test_an_in_place_edit_of_a_hardlinked_file_is_caught(tmp_path: Path) -> None:
    """The price of hardlink mode, and how it is caught: the object changes with the file,
    and verification (``mlcd verify``, every restore) reports it instead of serving it."""
    store = LocalObjectStore(tmp_path / "objects", link="hardlink")
    source = _payload(tmp_path / "data.bin")
    digest = store.put_file(source)
    os.chmod(source, 0o644)
    with open(source, "r+b") as handle:
        handle.write(b"edited in place")
    assert store.verify(digest) is False
    with pytest.raises(ObjectError, match="corrupt"):
        store.get_file(digest, tmp_path / "again.bin")


@pytest.mark.parametrize("link", ["copy", "reflink"])
def test_copy_and_reflink_modes_keep_separate_files(tmp_path: Path, link: str) -> None:
    """reflink falls back to a copy where the filesystem cannot clone (ext4, tmpfs)."""
    store = open_object_store(str(tmp_path / "objects"), link=link)
    assert isinstance(store, LocalObjectStore)
    source = _payload(tmp_path / "data.bin")
    digest = store.put_file(source)
    assert os.stat(source).st_ino != os.stat(store.path_of(digest)).st_ino
    assert os.stat(source).st_mode & stat.S_IWUSR  # the project file is left as it was
    out = tmp_path / "out.bin"
    store.get_file(digest, out)
    assert hash_file(out) == digest
    assert os.stat(out).st_mode & stat.S_IWUSR


def test_unknown_link_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ObjectError, match=r"cache\.link"):
        LocalObjectStore(tmp_path / "objects", link="symlink")


def test_data_add_follows_cache_link_from_mlcd_yaml(project: Path) -> None:
    config = project / "mlcd.yaml"
    config.write_text(config.read_text() + "\ncache:\n  link: hardlink\n")
    source = _payload(project / "raw.bin", 1024)
    result = run_cli(["data", "add", "raw.bin"], cwd=project)
    assert result.returncode == 0, result.stderr
    objects = LocalObjectStore(project / ".mlcd" / "objects")
    digest = hash_file(source)
    assert os.stat(source).st_ino == os.stat(objects.path_of(digest)).st_ino

    config.write_text(config.read_text().replace("link: hardlink", "link: symlink"))
    result = run_cli(["data", "add", "raw.bin"], cwd=project)
    assert result.returncode == 2
    assert "cache.link" in result.stderr and "hardlink" in result.stderr
