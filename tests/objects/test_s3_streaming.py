"""Objects over S3 at scale: blobs several times larger than the memory bound stream through
``mlcd push`` / ``mlcd pull`` (real CLI processes, peak RSS measured by the kernel), and
several blobs move at once, each verified by digest. S3 is moto's server on 127.0.0.1.

``MLCD_S3_STREAM_MIB`` sets the blob size (default 512: 2.7 times the 200 MB bound, enough to
show that no command holds the blob; it is CPU the whole suite waits on),
``MLCD_S3_PEAK_MB`` the bound. moto (in this process) assembles a multipart upload in memory,
about four times the blob: 1 GiB costs it ~4-5 GB; 5 GiB was killed by the kernel at 21 GB on
a 24 GB machine, so larger sizes are for ``benchmarks/bench_objects.py --s3`` on a big host.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcd.digest import Digest, hash_file
from mlcd.objects import LocalObjectStore, copy_objects, open_object_store
from mlcd.objects.remote import FsspecObjectStore

pytestmark = [pytest.mark.s3, pytest.mark.slow, pytest.mark.xdist_group("s3")]

MiB = 1024 * 1024
SIZE_MIB = int(os.environ.get("MLCD_S3_STREAM_MIB", "512"))
PEAK_MB = float(os.environ.get("MLCD_S3_PEAK_MB", "200"))
#: moto assembles a multipart upload in Python: give it time on a busy machine rather than
#: letting the client retry a completion that is still running.
CLIENT = {"config_kwargs": {"read_timeout": 1800, "connect_timeout": 60}}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"mlcd-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def write_blob(path: Path, size: int, seed: int = 0) -> None:
    """``size`` bytes that do not repeat at any block (a counter in every 1 MiB), written in
    8 MiB steps: no blob-sized buffer in the test process either."""
    block = bytearray(os.urandom(8 * MiB))
    with open(path, "wb") as handle:
        for index in range(0, size, len(block)):
            for mib in range(0, len(block), MiB):
                block[mib : mib + 16] = seed.to_bytes(8, "big") + (index + mib).to_bytes(8, "big")
            handle.write(block[: min(len(block), size - index)])


#: The console script's entry, reporting the process's own high-water RSS at exit. The
#: kernel's ``VmHWM`` belongs to the process image after ``exec``; ``ru_maxrss`` of a child
#: would also count the (large) test process it was forked from.
_WITH_PEAK = """
import atexit, sys
report = sys.argv.pop(1)

def peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as out:
        out.write(kib)

atexit.register(peak)
sys.argv[0] = "mlcd"
from mlcd.cli.entry import main
main()
"""


def peak_run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """Run the real ``mlcd`` CLI; its ``--json`` answer and its peak RSS in MB."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "peak"
        result = subprocess.run(
            [sys.executable, "-c", _WITH_PEAK, str(report), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"mlcd {' '.join(args)}: {result.stdout}{result.stderr}"
        return json.loads(result.stdout), int(report.read_text()) / 1024


def test_a_blob_many_times_the_bound_streams_through_push_and_pull(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    remote = {"url": f"s3://{bucket}/objects", "options": {**CLIENT}}
    remote["options"]["client_kwargs"] = {"endpoint_url": s3_endpoint}
    (project / "mlcd.yaml").write_text(json.dumps({"remotes": {"s3": remote}, "stages": {}}))
    blob = project / "data" / "big.bin"
    write_blob(blob, SIZE_MIB * MiB)
    expected = hash_file(blob)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    added, _ = peak_run(["data", "add", "data/big.bin", "--json"], project, env)
    assert added["added"][0]["digest"] == expected.hex
    pushed, push_peak = peak_run(["push", "--json"], project, env)
    assert pushed["objects_copied"] == 1

    # a fresh clone: no local objects, no workspace copy
    blob.unlink()
    LocalObjectStore(project / ".mlcd" / "objects").delete(expected)
    pulled, pull_peak = peak_run(["pull", "--json"], project, env)
    assert pulled["objects_copied"] == 1
    assert hash_file(blob) == expected

    print(f"{SIZE_MIB} MiB: push peak {push_peak:.0f} MB, pull peak {pull_peak:.0f} MB")
    assert SIZE_MIB * MiB / 1e6 >= 2 * PEAK_MB, "the blob must dwarf the bound to mean anything"
    assert push_peak < PEAK_MB
    assert pull_peak < PEAK_MB


class _Counting(FsspecObjectStore):
    """The real S3 store, counting uploads in flight (what is measured, not what is done)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._lock = threading.Lock()
        self.active = 0
        self.most = 0

    def _put_path(self, path: Path, digest: Digest) -> None:
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            super()._put_path(path, digest)
        finally:
            with self._lock:
                self.active -= 1


def test_several_blobs_move_at_once_each_verified(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    local = LocalObjectStore(tmp_path / "objects")
    digests = []
    for seed in range(6):
        path = tmp_path / f"blob{seed}.bin"
        write_blob(path, 24 * MiB, seed)
        digests.append(local.put_file(path))
    assert len(set(digests)) == 6
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}, "skip_instance_cache": True}
    remote = _Counting(f"s3://{bucket}/objects", **options, **CLIENT)
    progress: list[tuple[int, int]] = []

    copied = copy_objects(local, remote, digests, lambda d, t: progress.append((d, t)))

    assert sorted(copied) == sorted(digests)
    assert remote.most >= 4  # four uploads in flight at once
    assert progress[-1] == (6, 6)
    back = LocalObjectStore(tmp_path / "back")
    source = open_object_store(f"s3://{bucket}/objects", **options, **CLIENT)
    assert sorted(copy_objects(source, back, digests)) == sorted(digests)
    for digest in digests:
        assert hash_file(back.path_of(digest)) == digest
        assert back.verify(digest)
