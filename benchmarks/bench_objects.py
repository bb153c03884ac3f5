"""Object-store put throughput against BLAKE3's own hashing speed and raw read speed.

Workloads: one 1 GiB file; 2,000 files of 256 KiB (500 MiB). Each put goes into a new, empty
store (so every byte is copied, fsynced and verified), page cache warm, as `dvc add` was
measured. Pass --dvc PATH (a dvc executable) to time `dvc add` on the same files in the same run.

Usage: python benchmarks/bench_objects.py [--reps 3] [--dir /tmp] [--quick] [--dvc PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--quick", action="store_true", help="128 MiB + 200 files")
    parser.add_argument("--dvc", help="path of a dvc executable to compare with `dvc add`")
    args = parser.parse_args()
    if args.dvc:
        args.dvc = str(Path(shutil.which(args.dvc) or args.dvc).resolve())
    big_mib, small_count, small_kib = (128, 200, 256) if args.quick else (1024, 2000, 256)
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-objects-", dir=args.dir))
    try:
        big, small = make_data(work, big_mib, small_count, small_kib)
        small_files = sorted(small.iterdir())
        sizes = {"1 file": big_mib * MiB, f"{small_count} files": small_count * small_kib * 1024}
        read_all([big, *small_files])  # warm the page cache
        results: dict[str, dict[str, float]] = {name: {} for name in sizes}
        for _ in range(args.reps):
            for name, paths in (("1 file", [big]), (f"{small_count} files", small_files)):
                r = results[name]
                r.setdefault("_read", []).append(timed(lambda p=paths: read_all(p)))  # type: ignore[attr-defined]
                r.setdefault("_hash", []).append(timed(lambda p=paths: [hash_file(x) for x in p]))  # type: ignore[attr-defined]
                store_dir = work / f"objects-{time.monotonic_ns()}"
                store = LocalObjectStore(store_dir)
                if len(paths) == 1:
                    r.setdefault("_put", []).append(timed(lambda s=store: s.put_file(big)))  # type: ignore[attr-defined]
                else:
                    r.setdefault("_put", []).append(timed(lambda s=store: s.put_dir(small)))  # type: ignore[attr-defined]
                shutil.rmtree(store_dir)
                if args.dvc:
                    r.setdefault("_dvc", []).append(dvc_add(args.dvc, work, paths[0] if len(paths) == 1 else small))  # type: ignore[attr-defined]
        print("\n| workload | raw read MB/s | BLAKE3 hash MB/s | mlcd put MB/s | dvc add MB/s | put vs dvc |")
        print("|---|---|---|---|---|---|")
        for name, r in results.items():
            mb = sizes[name] / 1e6
            line = {k[1:]: mb / median(v) for k, v in r.items() if k.startswith("_")}  # type: ignore[arg-type]
            report("objects", workload=name, mb=round(mb, 1), **{f"{k}_mb_s": round(v, 1) for k, v in line.items()})
            dvc = line.get("dvc")
            dvc_text = f"{dvc:.0f}" if dvc else "n/a"
            ratio = f"{line['put'] / dvc:.1f}x" if dvc else "n/a"
            print(
                f"| {name} ({mb:.0f} MB) | {line['read']:.0f} | {line['hash']:.0f} | "
                f"{line['put']:.0f} | {dvc_text} | {ratio} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def dvc_add(dvc: str, work: Path, target: Path) -> float:
    repo = work / f"dvc-{time.monotonic_ns()}"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    dest = repo / target.name
    if target.is_dir():
        shutil.copytree(target, dest)
    else:
        shutil.copyfile(target, dest)
    read_all([dest] if dest.is_file() else sorted(dest.iterdir()))
    start = time.perf_counter()
    subprocess.run([dvc, "add", "-q", dest.name], cwd=repo, check=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(repo)
    return elapsed


if __name__ == "__main__":
    main()
