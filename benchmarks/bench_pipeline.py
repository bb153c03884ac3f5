"""Data tracking and no-op pipeline checks: mlcd against DVC on the same data, in the same run.

One project folder holds both tools (``dvc init --no-scm``, DVC's fastest mode, beside
``mlcd.yaml``) and one dataset: 2,000 files of 256 KiB (500 MiB) and one 1 GiB file, random
bytes, page cache warm. Measured, alternating the tools:

* first tracking: ``mlcd data add`` vs ``dvc add``, the folder and the big file, each into an
  empty cache (every byte hashed and copied), in a project already initialised. Both tools
  forget the file hashes they remember between repetitions: mlcd's stat cache and DVC's
  ``core.site_cache_dir`` (outside the project by default, in ``/var/tmp/dvc``: left in
  place, DVC would hash only in the first repetition);
* no-op status: ``mlcd status`` vs ``dvc status`` once both are up to date;
* no-op run of a 10-stage chain whose first stage reads the whole dataset: ``mlcd run`` vs
  ``dvc repro``.

Commands are the installed console scripts, timed from process start to exit (Python start-up
included), with byte-code compiled as an installed package has it.

Usage: python benchmarks/bench_pipeline.py [--quick] [--reps N] [--track-reps N] [--dir DIR]
    [--only tracking|noop]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

MiB = 1024 * 1024
STAGES = 10


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            sys.exit(f"{name} not found: pip install 'mlcd[bench]' (or -e '.[bench]')")
        return found
    return str(path)


def make_data(root: Path, files: int, file_kib: int, big_mib: int) -> None:
    """The dataset: ``data/files/`` (many small files) and ``data/big.bin``."""
    rng = random.Random(20240601)
    folder = root / "data" / "files"
    folder.mkdir(parents=True)
    for index in range(files):
        (folder / f"part-{index // 250:02d}").mkdir(exist_ok=True)
        (folder / f"part-{index // 250:02d}" / f"f{index:05d}.bin").write_bytes(
            rng.randbytes(file_kib * 1024)
        )
    with open(root / "data" / "big.bin", "wb") as handle:
        for _ in range(big_mib // 16):
            handle.write(rng.randbytes(16 * MiB))
    os.sync()  # written back now, not while the first tool is being timed


def _chain(tool: str) -> list[tuple[str, str, list[str], str]]:
    """``(name, cmd, deps, out)`` of the 10 chained stages, writing under ``out_<tool>/``."""
    stages = []
    for index in range(1, STAGES + 1):
        out = f"out_{tool}/s{index:02d}.txt"
        if index == 1:
            deps = ["data/files", "data/big.bin"]
            cmd = f"mkdir -p out_{tool} && ls data/files | wc -l > {out}"
        else:
            deps = [f"out_{tool}/s{index - 1:02d}.txt"]
            cmd = f"cat {deps[0]} > {out} && echo {index} >> {out}"
        stages.append((f"s{index:02d}", cmd, deps, out))
    return stages


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one run; CPU (user + system) barely moves with machine load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def write_pipelines(root: Path) -> None:
    """The same 10 stages as ``mlcd.yaml`` and ``dvc.yaml``."""
    import yaml

    def section(tool: str) -> dict[str, object]:
        return {
            name: {"cmd": cmd, "deps": deps, "outs": [out]} for name, cmd, deps, out in _chain(tool)
        }

    (root / "mlcd.yaml").write_text(yaml.safe_dump({"stages": section("mlcd")}, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": section("dvc")}, sort_keys=False))


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(
            f"'{' '.join(argv)}' failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def dvc_site(root: Path) -> Path:
    """DVC's site cache (its remembered file hashes), kept beside the project for the run."""
    return root.parent / "dvc-site"


def reset_tracking(root: Path) -> None:
    """Forget the data both tools tracked: empty caches, no pointer files, no file hashes.

    The projects themselves stay initialised (``.dvc/config``; mlcd's metadata database and
    parsed ``mlcd.yaml``): the case measured is new data added to a project in use.
    """
    mlcd_state = root / ".mlcd"
    for path in (
        mlcd_state / "objects",
        mlcd_state / "statcache.db",
        mlcd_state / "statcache.db-wal",
        mlcd_state / "statcache.db-shm",
        root / ".dvc" / "cache",
        root / ".dvc" / "tmp",
        root / "data" / "files.dvc",
        root / "data" / "big.bin.dvc",
        root / "data" / "files.mlcd",
        root / "data" / "big.bin.mlcd",
        root / "data" / ".gitignore",
        dvc_site(root),
    ):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    os.sync()


def first_tracking(
    root: Path, env: dict[str, str], mlcd: str, dvc: str, reps: int
) -> dict[str, dict[str, list[float]]]:
    """Times of tracking the folder and the big file into empty caches, tools alternating:
    wall seconds under ``files``/``big``, CPU seconds (user + system) under ``files_cpu`` /
    ``big_cpu`` (the work done, less sensitive to other load; waits on the disk are not CPU)."""
    times: dict[str, dict[str, list[float]]] = {
        tool: {"files": [], "big": [], "files_cpu": [], "big_cpu": []} for tool in ("mlcd", "dvc")
    }
    commands = {"mlcd": [mlcd, "data", "add"], "dvc": [dvc, "add", "-q"]}
    for rep in range(reps):
        reset_tracking(root)
        order = ["mlcd", "dvc"] if rep % 2 == 0 else ["dvc", "mlcd"]
        for tool in order:
            for what, path in (("files", "data/files"), ("big", "data/big.bin")):
                wall, cpu = timed([*commands[tool], path], root, env)
                times[tool][what].append(wall)
                times[tool][f"{what}_cpu"].append(cpu)
                os.sync()  # each tool's cache writes land before the next command is timed
        print(
            f"  tracking rep {rep + 1}/{reps}: "
            + ", ".join(
                f"{t} {times[t]['files'][-1]:.2f}+{times[t]['big'][-1]:.2f}s" for t in order
            ),
            file=sys.stderr,
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 files + a 64 MiB file")
    parser.add_argument("--reps", type=int, default=15, help="repetitions of no-op commands")
    parser.add_argument("--track-reps", type=int, default=3, help="repetitions of first tracking")
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the folder afterwards")
    parser.add_argument(
        "--link",
        choices=["copy", "hardlink"],
        default="copy",
        help="how both tools bring files into their caches (mlcd cache.link, dvc cache.type)",
    )
    parser.add_argument(
        "--only",
        choices=["tracking", "noop"],
        default=None,
        help="run only first tracking, or only the no-op status and run",
    )
    args = parser.parse_args()
    files, big_mib = (200, 64) if args.quick else (2000, 1024)
    mlcd, dvc = _bin("mlcd"), _bin("dvc")

    # An installed package has byte-code; without it every run would compile mlcd's modules.
    import compileall

    import mlcd as package

    compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    base = Path(tempfile.mkdtemp(prefix="mlcd-bench-pipeline-", dir=args.dir))
    root = base / "project"
    root.mkdir()
    try:
        print(f"building {files} files of 256 KiB + {big_mib} MiB in {root}", file=sys.stderr)
        make_data(root, files, 256, big_mib)
        (root / "mlcd.yaml").write_text(f"cache:\n  link: {args.link}\nstages: {{}}\n")
        run([dvc, "init", "--no-scm", "-q"], root, env)
        run([dvc, "config", "core.analytics", "false"], root, env)
        run([dvc, "config", "cache.type", args.link], root, env)
        run([dvc, "config", "core.site_cache_dir", str(dvc_site(root))], root, env)
        run([mlcd, "gc", "--dry-run"], root, env)  # creates mlcd's metadata database
        run([mlcd, "status"], root, env)  # and its parsed mlcd.yaml, as in a project in use

        tracking = first_tracking(
            root, env, mlcd, dvc, 0 if args.only == "noop" else args.track_reps
        )
        rows = []
        cpu_rows: list[tuple[str, float, float]] = []
        tracked = (
            ()
            if args.only == "noop"
            else (("files", f"{files} files"), ("big", f"one {big_mib} MiB file"))
        )
        for what, label in tracked:
            m, d = median(tracking["mlcd"][what]), median(tracking["dvc"][what])
            m_cpu = median(tracking["mlcd"][f"{what}_cpu"])
            d_cpu = median(tracking["dvc"][f"{what}_cpu"])
            rows.append((f"first tracking, {label}, {args.link} (`data add` / `dvc add`)", m, d))
            cpu_rows.append((f"first tracking, {label}, {args.link}", m_cpu, d_cpu))
            report(
                "pipeline",
                case=f"track_{what}_{args.link}",
                mlcd_s=round(m, 3),
                dvc_s=round(d, 3),
                ratio=round(d / m, 2),
                mlcd_cpu_s=round(m_cpu, 3),
                dvc_cpu_s=round(d_cpu, 3),
                all_mlcd_s=[round(t, 2) for t in tracking["mlcd"][what]],
                all_dvc_s=[round(t, 2) for t in tracking["dvc"][what]],
                reps=args.track_reps,
                files=files,
                big_mib=big_mib,
            )

        if args.only == "noop":  # the data must be tracked for the no-op checks
            for argv in ([mlcd, "data", "add"], [dvc, "add", "-q"]):
                for path in ("data/files", "data/big.bin"):
                    run([*argv, path], root, env)
        if args.only != "tracking":
            write_pipelines(root)
            run([mlcd, "run"], root, env)
            run([dvc, "repro", "-q"], root, env)
        cases = {
            "no-op status (`status`)": ([mlcd, "status"], [dvc, "status", "-q"]),
            f"no-op {STAGES}-stage run (`run` / `repro`)": ([mlcd, "run"], [dvc, "repro", "-q"]),
        }
        for label, (m_argv, d_argv) in ({} if args.only == "tracking" else cases).items():
            times: dict[str, list[tuple[float, float]]] = {"mlcd": [], "dvc": []}
            for argv in (m_argv, d_argv):
                for _ in range(2):
                    timed(argv, root, env)  # warm-up
            for _ in range(args.reps):  # alternate, so load changes hit both alike
                times["mlcd"].append(timed(m_argv, root, env))
                times["dvc"].append(timed(d_argv, root, env))
            m, d = (median([w for w, _ in times[t]]) for t in ("mlcd", "dvc"))
            m_cpu, d_cpu = (median([c for _, c in times[t]]) for t in ("mlcd", "dvc"))
            rows.append((label, m, d))
            cpu_rows.append((label, m_cpu, d_cpu))
            report(
                "pipeline",
                case=label,
                mlcd_s=round(m, 4),
                dvc_s=round(d, 4),
                ratio=round(d / m, 2),
                mlcd_cpu_s=round(m_cpu, 4),
                dvc_cpu_s=round(d_cpu, 4),
                cpu_ratio=round(d_cpu / m_cpu, 2),
                reps=args.reps,
            )

        version = subprocess.run([dvc, "--version"], capture_output=True, text=True, env=env)
        print(f"\nDVC {version.stdout.strip()}, dataset {files} x 256 KiB + {big_mib} MiB\n")
        print("| case | mlcd (s) | DVC (s) | DVC / mlcd |\n|---|---|---|---|")
        for label, m, d in rows:
            print(f"| {label} | {m:.3f} | {d:.3f} | {d / m:.1f}x |")
        print("\nCPU time (user + system), less sensitive to machine load:\n")
        print("| case | mlcd CPU (s) | DVC CPU (s) | DVC / mlcd |\n|---|---|---|---|")
        for label, m, d in cpu_rows:
            print(f"| {label} | {m:.3f} | {d:.3f} | {d / m:.1f}x |")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}", file=sys.stderr)


if __name__ == "__main__":
    main()
