"""Object-store throughput, and blobs over S3 (memory and speed).

Local: one 1 GiB file and 2,000 files of 256 KiB (500 MiB), page cache warm. Each put goes
into a new, empty store (every byte copied, made durable and verified), beside BLAKE3's own
speed and a raw read of the same bytes. The put is a library call inside this process: it is
NOT compared with ``dvc add``, a command that also pays Python start-up and its project
handling. With ``--dvc PATH``, the commands are compared as commands: ``mlcd data add`` and
``dvc add`` of the same data, each in a fresh project (``dvc init --no-scm``), alternating
(``bench_pipeline.py`` does the same inside one project, with more repetitions).

S3 (``--s3 MIB``): one blob of MIB MiB through moto's server on 127.0.0.1: ``mlcd data add``,
``mlcd push``, then ``mlcd pull`` into an empty cache, each a real CLI process whose peak RSS
(``VmHWM``) is reported; then 8 blobs of 64 MiB pushed at once. moto keeps blobs in its own
memory and assembles uploads in Python: the speed is moto's, the memory is mlcd's. moto's
own completion of a multipart upload holds about four copies of the blob in memory (``--s3
5120`` was OOM-killed at 21 GB on a 24 GB machine), so this benchmark's server assembles a
completed upload in a temporary file instead (:func:`_moto_assembles_on_disk`: the same
checks, bytes and ETag; only the server is changed, mlcd is not). A GET still reads the
whole blob into the server's memory once: keep MIB under half of the free memory.

Usage: python benchmarks/bench_objects.py [--reps 3] [--dir /tmp] [--quick] [--dvc PATH]
       python benchmarks/bench_objects.py --s3 5120 [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "src"))
from _common import median, report
from mlcd.digest import hash_file
from mlcd.objects import LocalObjectStore

MiB = 1024 * 1024


def make_data(root: Path, big_mib: int, small_count: int, small_kib: int) -> tuple[Path, Path]:
    big = root / "big.bin"
    with big.open("wb") as handle:
        for _ in range(big_mib // 16):
            handle.write(os.urandom(16 * MiB))
    small = root / "small"
    small.mkdir()
    for i in range(small_count):
        (small / f"f{i:05d}.bin").write_bytes(os.urandom(small_kib * 1024))
    return big, small


def read_all(paths: list[Path]) -> None:
    buffer = bytearray(MiB)
    view = memoryview(buffer)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(view):
                pass


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def add_command(tool: str, work: Path, target: Path, dvc: str) -> float:
    """Wall time of ``mlcd data add`` or ``dvc add`` of ``target`` in a new initialised project
    (the data moved in beforehand, page cache warm), start-up included."""
    repo = work / f"{tool}-{time.monotonic_ns()}"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}
    if tool == "dvc":
        subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
        # DVC remembers file hashes in a site cache outside the project: a fresh one, so that
        # it hashes the data as new, as mlcd does with its empty stat cache
        site = repo / "site"
        subprocess.run(
            [dvc, "config", "core.site_cache_dir", str(site)], cwd=repo, check=True, env=env
        )
        argv = [dvc, "add", "-q", target.name]
    else:
        (repo / "mlcd.yaml").write_text("stages: {}\n")
        subprocess.run([_bin("mlcd"), "gc", "--dry-run"], cwd=repo, check=True, capture_output=True)
        argv = [_bin("mlcd"), "data", "add", target.name]
    dest = repo / target.name
    os.replace(target, dest)
    try:
        read_all([dest] if dest.is_file() else sorted(dest.iterdir()))
        os.sync()
        start = time.perf_counter()
        subprocess.run(argv, cwd=repo, check=True, capture_output=True, env=env)
        elapsed = time.perf_counter() - start
    finally:
        if dest.is_dir():
            for path in dest.iterdir():  # hard links or read-only copies: make them movable
                os.chmod(path, 0o644)
        else:
            os.chmod(dest, 0o644)
        os.replace(dest, target)
    shutil.rmtree(repo)
    os.sync()
    return elapsed


def local_bench(args: argparse.Namespace) -> None:
    big_mib, small_count, small_kib = (128, 200, 256) if args.quick else (1024, 2000, 256)
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-objects-", dir=args.dir))
    try:
        big, small = make_data(work, big_mib, small_count, small_kib)
        small_files = sorted(small.iterdir())
        sizes = {"1 file": big_mib * MiB, f"{small_count} files": small_count * small_kib * 1024}
        read_all([big, *small_files])  # warm the page cache
        results: dict[str, dict[str, list[float]]] = {name: {} for name in sizes}
        for rep in range(args.reps):
            for name, paths in (("1 file", [big]), (f"{small_count} files", small_files)):
                r = results[name]
                r.setdefault("read", []).append(timed(lambda p=paths: read_all(p)))
                r.setdefault("hash", []).append(timed(lambda p=paths: [hash_file(x) for x in p]))
                store_dir = work / f"objects-{time.monotonic_ns()}"
                store = LocalObjectStore(store_dir)
                if len(paths) == 1:
                    r.setdefault("put", []).append(timed(lambda s=store: s.put_file(big)))
                else:
                    r.setdefault("put", []).append(timed(lambda s=store: s.put_dir(small)))
                shutil.rmtree(store_dir)
                if args.dvc:
                    target = paths[0] if len(paths) == 1 else small
                    order = ("mlcd", "dvc") if rep % 2 == 0 else ("dvc", "mlcd")
                    for tool in order:
                        elapsed = add_command(tool, work, target, args.dvc)
                        r.setdefault(f"{tool}_cmd", []).append(elapsed)
        print("\nIn-process put (a library call; no command start-up):\n")
        print("| workload | raw read MB/s | BLAKE3 hash MB/s | mlcd put MB/s |")
        print("|---|---|---|---|")
        for name, r in results.items():
            mb = sizes[name] / 1e6
            rate = {k: mb / median(v) for k, v in r.items() if k in ("read", "hash", "put")}
            report(
                "objects",
                workload=name,
                mb=round(mb, 1),
                **{f"{k}_mb_s": round(v, 1) for k, v in rate.items()},
            )
            print(
                f"| {name} ({mb:.0f} MB) | {rate['read']:.0f} | {rate['hash']:.0f} | {rate['put']:.0f} |"
            )
        if args.dvc:
            print("\nCommand against command (start-up included, fresh project each):\n")
            print("| workload | `mlcd data add` (s) | `dvc add` (s) | DVC / mlcd |")
            print("|---|---|---|---|")
            for name, r in results.items():
                m, d = median(r["mlcd_cmd"]), median(r["dvc_cmd"])
                report(
                    "objects_cmd",
                    workload=name,
                    mlcd_s=round(m, 3),
                    dvc_s=round(d, 3),
                    ratio=round(d / m, 2),
                    reps=args.reps,
                )
                print(f"| {name} | {m:.2f} | {d:.2f} | {d / m:.1f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------- S3

#: The console script's entry, reporting the process's own high-water RSS (VmHWM) at exit.
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


def mlcd_peak(args: list[str], cwd: Path) -> tuple[dict[str, Any], float, float]:
    """``(json answer, seconds, peak RSS MB)`` of one real CLI process."""
    with tempfile.TemporaryDirectory() as folder:
        peak = Path(folder) / "peak"
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", _WITH_PEAK, str(peak), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"mlcd {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return json.loads(result.stdout), elapsed, int(peak.read_text()) / 1024


def write_blob(path: Path, size: int, seed: int = 0) -> None:
    block = bytearray(os.urandom(8 * MiB))
    with open(path, "wb") as handle:
        for index in range(0, size, len(block)):
            for mib in range(0, len(block), MiB):
                block[mib : mib + 16] = seed.to_bytes(8, "big") + (index + mib).to_bytes(8, "big")
            handle.write(block[: min(len(block), size - index)])


def _moto_assembles_on_disk() -> None:
    """Make the in-process moto server assemble a completed multipart upload in a temporary
    file, not as bytes in memory (moto 5 joins the parts into a bytearray, copies it to bytes
    and spools that through a BytesIO: about four copies of the blob at once). The checks
    (every part listed with its ETag, each but the last at least 5 MiB) and the ETag
    (MD5 of the parts' MD5s) are moto's; an upload with a checksum algorithm keeps moto's
    own path. The object's bytes go to the key's spooled file on disk directly."""
    import codecs
    import mmap

    from moto.s3 import models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.utilities.utils import md5_hash

    own_complete = models.FakeMultipart.complete

    def complete(self, body):  # type: ignore[no-untyped-def]
        if self.metadata.get("x-amz-checksum-algorithm"):
            return own_complete(self, body)
        md5s = bytearray()
        sizes: list[int] = []
        last = None
        with tempfile.TemporaryFile() as assembled:
            for number, etag in body:
                part = self.parts.get(number)
                if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                    raise InvalidPart()
                if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                    raise EntityTooSmall()
                md5s.extend(codecs.decode(part.etag.replace('"', ""), "hex"))
                assembled.write(part.value)  # one part (8 MiB) in memory at a time
                sizes.append(part.size)
                last = part
            if not sizes:
                raise MalformedXML()
            assembled.flush()
            self.completed_part_sizes = sizes
            whole = md5_hash()
            whole.update(bytes(md5s))
            # a read-only map of the file: the key's setter copies it to its own file
            value = mmap.mmap(assembled.fileno(), 0, access=mmap.ACCESS_READ)
        return value, f"{whole.hexdigest()}-{len(sizes)}", None

    value: property = vars(models.FakeKey)["value"]
    own_setter = value.fset
    assert own_setter is not None

    def set_value(self, new_value):  # type: ignore[no-untyped-def]
        if len(new_value) > self._max_buffer_size:
            self._value_buffer.rollover()  # straight to its file, not through a BytesIO
        own_setter(self, new_value)

    models.FakeMultipart.complete = complete  # type: ignore[method-assign]
    models.FakeKey.value = value.setter(set_value)  # type: ignore[assignment]


def s3_bench(args: argparse.Namespace) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    _moto_assembles_on_disk()

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="mlcd-bench")
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-s3-", dir=args.dir))
    rows = []
    try:
        options = {
            "client_kwargs": {"endpoint_url": endpoint},
            "config_kwargs": {"read_timeout": 3600},
        }
        remote = {"s3": {"url": "s3://mlcd-bench/objects", "options": options}}
        (work / "data").mkdir()
        (work / "mlcd.yaml").write_text(json.dumps({"remotes": remote, "stages": {}}))
        size = args.s3 * MiB
        write_blob(work / "data" / "big.bin", size)
        expected = hash_file(work / "data" / "big.bin").hex
        for label, argv, prepare in (
            (f"data add, {args.s3} MiB", ["data", "add", "data/big.bin", "--json"], None),
            (f"push, {args.s3} MiB", ["push", "--json"], None),
            (f"pull, {args.s3} MiB (empty cache)", ["pull", "--json"], "fresh"),
        ):
            if prepare == "fresh":
                shutil.rmtree(work / ".mlcd" / "objects")
                (work / "data" / "big.bin").unlink()
            _, seconds, peak = mlcd_peak(argv, work)
            rows.append((label, seconds, size / 1e6 / seconds, peak))
            print(f"  {label}: {seconds:.1f} s, peak {peak:.0f} MB", file=sys.stderr)
        assert hash_file(work / "data" / "big.bin").hex == expected, "pulled bytes differ"
        (work / "data" / "big.bin").unlink()

        # several blobs at once: 8 x 64 MiB in one folder, pushed and pulled
        many = work / "data" / "many"
        many.mkdir()
        for seed in range(8):
            write_blob(many / f"b{seed}.bin", 64 * MiB, seed + 1)
        mlcd_peak(["data", "add", "data/many", "--json"], work)
        _, seconds, peak = mlcd_peak(["push", "--json"], work)
        rows.append(("push, 8 x 64 MiB", seconds, 8 * 64 * MiB / 1e6 / seconds, peak))
        shutil.rmtree(work / ".mlcd" / "objects")
        shutil.rmtree(many)
        _, seconds, peak = mlcd_peak(["pull", "--json"], work)
        rows.append(("pull, 8 x 64 MiB", seconds, 8 * 64 * MiB / 1e6 / seconds, peak))
        print("\n| case | seconds | MB/s | mlcd peak RSS (MB) |\n|---|---|---|---|")
        for label, seconds, rate, peak in rows:
            report(
                "objects_s3",
                case=label,
                seconds=round(seconds, 2),
                mb_s=round(rate, 1),
                peak_mb=round(peak),
            )
            print(f"| {label} | {seconds:.1f} | {rate:.0f} | {peak:.0f} |")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--quick", action="store_true", help="128 MiB + 200 files")
    parser.add_argument(
        "--dvc", help="path of a dvc executable: time `dvc add` against `mlcd data add`"
    )
    parser.add_argument("--s3", type=int, metavar="MIB", help="S3 round trip of a MIB MiB blob")
    args = parser.parse_args()
    if args.s3:
        s3_bench(args)
    else:
        if args.dvc:
            args.dvc = str(Path(shutil.which(args.dvc) or args.dvc).resolve())
        local_bench(args)


if __name__ == "__main__":
    main()
