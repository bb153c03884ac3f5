"""The object-store port: one contract, run over every implementation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcd.digest import Digest, hash_bytes, hash_file
from mlcd.errors import ConfigError, CorruptObject, ObjectNotFound, UnsafePath
from mlcd.objects import (
    LocalObjectStore,
    MemoryObjectStore,
    ObjectStore,
    copy_objects,
    open_object_store,
)


@pytest.fixture(params=["local", "memory", "fsspec-memory"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
    elif request.param == "memory":
        yield MemoryObjectStore()
    else:
        import uuid

        yield open_object_store(f"memory://mlcd-test-{uuid.uuid4().hex}")


def test_put_get_roundtrip_and_dedup(objects: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(100_000))
    digest = objects.put_file(source)
    assert digest == hash_file(source)
    assert objects.put_file(source) == digest
    assert len(list(objects.iter_digests())) == 1
    out = tmp_path / "out" / "a.bin"
    objects.get_file(digest, out)
    assert out.read_bytes() == source.read_bytes()
    assert objects.get_bytes(objects.put_bytes(b"hello")) == b"hello"


def test_directory_manifest_roundtrip(objects: ObjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.csv").write_text("a,b\n1,2\n")
    (folder / "sub" / "y.txt").write_text("y")
    digest = objects.put_dir(folder)
    assert digest.is_dir
    assert [e.path for e in objects.read_manifest(digest)] == ["sub/y.txt", "x.csv"]
    dest = tmp_path / "restored"
    objects.get_file(digest, dest)
    assert (dest / "sub" / "y.txt").read_text() == "y"
    assert objects.put_dir(folder) == digest  # same content, same digest


def test_missing_object_is_reported(objects: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="mlcd pull"):
        objects.get_file(hash_bytes(b"never stored"), tmp_path / "x")


def test_copy_between_stores_transfers_only_missing(objects: ObjectStore, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(str(i))
    digest = objects.put_dir(folder)
    target = LocalObjectStore(tmp_path / "remote")
    assert len(copy_objects(objects, target, [digest])) == 4  # 3 files + manifest
    assert copy_objects(objects, target, [digest]) == []
    target.get_file(digest, tmp_path / "again")
    assert (tmp_path / "again" / "2.txt").read_text() == "2"


def test_flipped_byte_is_detected_and_never_returned(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 10_000)
    digest = objects.put_file(source)
    path = objects.path_of(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObject, match=digest.hex):
        objects.get_bytes(digest)
    dest = tmp_path / "out.bin"
    with pytest.raises(CorruptObject):
        objects.get_file(digest, dest)
    assert not dest.exists()
    assert not objects.verify(digest)


def test_manifest_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    from mlcd.objects.base import ManifestEntry, encode_manifest

    objects = LocalObjectStore(tmp_path / "objects")
    blob = objects.put_bytes(b"evil")
    manifest = objects.put_bytes(encode_manifest([ManifestEntry("../escape.txt", blob, 4)]))
    with pytest.raises(UnsafePath, match=r"entry '\.\./escape\.txt' contains '\.\.'"):
        objects.get_file(Digest(manifest.hex, is_dir=True), tmp_path / "target")
    assert not (tmp_path / "escape.txt").exists()


def test_unknown_scheme_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ConfigError, match="unknown object store scheme"):
        open_object_store("ftp2://host/path")


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_s3fs(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("s3fs"):
            raise ImportError("No module named 's3fs'", name="s3fs")
        return real_import(name, *args, **kwargs)

    # As on a machine without s3fs, even after an earlier test in this process imported it:
    # forget the module and fsspec's cached class too.
    import sys

    import fsspec  # noqa: F401  (loads fsspec.registry, the module: fsspec.registry is a view)

    for name in [m for m in sys.modules if m == "s3fs" or m.startswith("s3fs.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_s3fs)
    with pytest.raises((ConfigError, Exception), match=r"mlcd\[s3\]"):
        open_object_store("s3://bucket/prefix")


_PUTTER = """
import sys
from mlcd.objects import LocalObjectStore
store = LocalObjectStore(sys.argv[1])
print("start", flush=True)
store.put_file(sys.argv[2])
print("done", flush=True)
"""


def test_sigkill_mid_put_leaves_no_partial_object(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(4 * 1024 * 1024))  # 256 MiB
    digest = hash_file(big)
    store = LocalObjectStore(tmp_path / "objects")
    proc = subprocess.Popen(
        [sys.executable, "-c", _PUTTER, str(store.root), str(big)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "start"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any((store.root / "tmp").glob("*")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    target = store.path_of(digest)
    assert not target.exists() or hash_file(target) == digest  # absent or complete
    assert store.put_file(big) == digest  # the next put succeeds
    assert store.verify(digest)
    store.clean_staging()
    assert not list((store.root / "tmp").iterdir())


_SAME_PUT = """
import sys
from mlcd.objects import LocalObjectStore
LocalObjectStore(sys.argv[1]).put_file(sys.argv[2])
"""


def test_many_processes_put_the_same_object(tmp_path: Path) -> None:
    source = tmp_path / "same.bin"
    source.write_bytes(os.urandom(8 * 1024 * 1024))
    root = tmp_path / "objects"
    procs = [
        subprocess.Popen([sys.executable, "-c", _SAME_PUT, str(root), str(source)])
        for _ in range(8)
    ]
    assert [p.wait() for p in procs] == [0] * 8
    store = LocalObjectStore(root)
    assert [d.hex for d in store.iter_digests()] == [hash_file(source).hex]
    assert store.verify(hash_file(source))
