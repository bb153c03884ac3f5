"""The object-store contract over S3: s3fs against a real S3 API server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlcd.digest import hash_file
from mlcd.errors import CorruptObject
from mlcd.objects import LocalObjectStore, copy_objects, open_object_store

# One worker runs them all under pytest-xdist (--dist loadgroup): one moto server, not one each.
pytestmark = [pytest.mark.s3, pytest.mark.xdist_group("s3")]


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"mlcd-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/objects"


def _store(url: str, endpoint: str):  # type: ignore[no-untyped-def]
    return open_object_store(
        url, client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True
    )


def test_put_get_and_directories_on_s3(s3_url: str, s3_endpoint: str, tmp_path: Path) -> None:
    store = _store(s3_url, s3_endpoint)
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.bin").write_bytes(os.urandom(1000 + i))
    digest = store.put_dir(folder)
    assert store.has(digest)
    store.get_file(digest, tmp_path / "back")
    for i in range(3):
        assert (tmp_path / "back" / f"{i}.bin").read_bytes() == (folder / f"{i}.bin").read_bytes()
    assert len(list(store.iter_digests())) == 4


def test_push_and_pull_between_local_and_s3_verify_bytes(
    s3_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    local = LocalObjectStore(tmp_path / "objects")
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(50_000))
    digest = local.put_file(source)
    remote = _store(s3_url, s3_endpoint)
    assert copy_objects(local, remote, [digest]) == [digest]
    assert copy_objects(local, remote, [digest]) == []  # only what is missing
    fresh = LocalObjectStore(tmp_path / "other")
    copy_objects(remote, fresh, [digest])
    assert hash_file(fresh.path_of(digest)) == digest
    remote.fs.pipe_file(remote._key(digest), b"tampered in the bucket")
    with pytest.raises(CorruptObject):
        copy_objects(remote, LocalObjectStore(tmp_path / "third"), [digest])


_COPY_AND_MEASURE = """
import os, sys
from pathlib import Path
from mlcd.digest import Digest
from mlcd.objects import LocalObjectStore, copy_objects, open_object_store

def peak_mib():
    # VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

local = LocalObjectStore(sys.argv[1])
back = LocalObjectStore(sys.argv[2])
remote = open_object_store(sys.argv[3], client_kwargs={"endpoint_url": sys.argv[4]},
                           skip_instance_cache=True)
digest = Digest(sys.argv[5])
remote.has(digest)  # the S3 client is built before the baseline
before = peak_mib()
copy_objects(local, remote, [digest])
after_push = peak_mib()
copy_objects(remote, back, [digest])
after_pull = peak_mib()
print(before, after_push, after_pull)
"""


def test_copies_stream_in_bounded_memory(s3_url: str, s3_endpoint: str, tmp_path: Path) -> None:
    """A blob larger than any buffer goes to S3 and back chunk by chunk: the copying process
    grows by far less than the blob (it read whole blobs into memory before)."""
    import subprocess
    import sys

    size = 256 * 1024 * 1024
    blob = tmp_path / "big.bin"
    with open(blob, "wb") as out:
        for _ in range(size // (16 * 1024 * 1024)):
            out.write(os.urandom(16 * 1024 * 1024))
    local = LocalObjectStore(tmp_path / "local")
    digest = local.put_file(blob)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _COPY_AND_MEASURE,
            str(tmp_path / "local"),
            str(tmp_path / "back"),
            s3_url,
            s3_endpoint,
            digest.hex,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=os.environ.copy(),
    )
    before, after_push, after_pull = (float(x) for x in result.stdout.split())
    blob_mib = size / 1024 / 1024
    assert after_push - before < blob_mib / 2, result.stdout
    assert after_pull - before < blob_mib / 2, result.stdout
    assert hash_file(LocalObjectStore(tmp_path / "back").path_of(digest)) == digest
