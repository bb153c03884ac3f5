"""Start-up cost, end to end: `mlcd --help`, `mlcd status` on a no-op project, `mlcd runs list`
on a store of many runs and `import mlcd` -> first committed metric in a new process, against
`python -c pass` and, in the same run, `dvc --version` (the anchor). Medians of wall time and of
CPU time (user + system of the child, from getrusage: steadier than wall time on a loaded
machine).

The newest 1,000 of the store's runs are also read in this process, both ways: the SQLite fast
path (``mlcd.tracking.records.newest_runs``: stdlib sqlite3) and ``query.search`` on an open
SQLAlchemy store; and ``mlcd runs list`` once more with ``MLCD_NO_FAST_STORE=1`` (the
SQLAlchemy path it takes on PostgreSQL or an unmigrated store).

Usage: python benchmarks/bench_startup.py [--reps 20] [--runs 100000]
For the MLflow anchor, pass --mlflow PYTHON (a python with mlflow installed) to time `import
mlflow`. `mlcd status` runs in a fresh `mlcd init` project with one stage, up to date.
Children run with bytecode caching on (PYTHONDONTWRITEBYTECODE removed) and one warm-up run,
as after a `pip install`, which compiles the package.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import report

FIRST_METRIC = "import mlcd\nwith mlcd.start_run():\n    mlcd.log_metric('loss', 0.5)\n"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_both(argv: list[str], reps: int, **kwargs: Any) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of running ``argv`` ``reps`` times, after one warm-up run."""
    subprocess.run(argv, check=True, capture_output=True, **kwargs)
    walls, cpus = [], []
    for _ in range(reps):
        cpu, start = _children_cpu(), time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, **kwargs)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu)
    return walls, cpus


def _project(mlcd_bin: str, env: dict[str, str], stage: bool) -> Path:
    project = Path(tempfile.mkdtemp(prefix="mlcd-startup-"))
    subprocess.run([mlcd_bin, "init"], cwd=project, check=True, capture_output=True, env=env)
    if stage:
        (project / "mlcd.yaml").write_text(
            "version: 1\nstages:\n  hello:\n"
            "    cmd: python -c \"open('out.txt', 'w').write('hi')\"\n    outs: [out.txt]\n"
        )
        subprocess.run([mlcd_bin, "run"], cwd=project, check=True, capture_output=True, env=env)
    return project


def newest_in_process(root: Path, reps: int) -> list[tuple[str, float, float]]:
    """Median wall and CPU seconds of reading the newest 1,000 runs with their data, in this
    process: the fast path (it opens the store each call) and SQLAlchemy on an open store."""
    from mlcd.project import Project
    from mlcd.tracking.query import search
    from mlcd.tracking.records import newest_runs

    found = []
    with Project.open(root) as project:
        store = project.store
        for name, read in (
            ("newest 1,000 runs (fast path, opens the store)", lambda: newest_runs(1000, root)),
            ("newest 1,000 runs (query.search, open SQLAlchemy store)", None),
        ):
            walls, cpus = [], []
            for _ in range(reps + 1):
                cpu, start = time.process_time(), time.perf_counter()
                if read is not None:
                    records = read()
                else:
                    with store.read() as conn:
                        records = search(conn, None, None, 1000)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
                assert records is not None and len(records) == 1000
            found.append((name, statistics.median(walls[1:]), statistics.median(cpus[1:])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the runs-list store")
    parser.add_argument("--mlflow", help="a python interpreter that has mlflow installed")
    args = parser.parse_args()
    py = sys.executable
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    mlcd_bin = shutil.which("mlcd", path=str(Path(py).parent)) or "mlcd"
    noop = _project(mlcd_bin, env, stage=True)
    many = _project(mlcd_bin, env, stage=False)
    from bench_tracking import build_big_store

    build_big_store(many / ".mlcd" / "mlcd.db", args.runs).dispose()

    cases: dict[str, tuple[list[str], Path | None]] = {
        "python -c pass": ([py, "-c", "pass"], None),
        "import mlcd": ([py, "-c", "import mlcd"], None),
        "mlcd --help": ([mlcd_bin, "--help"], None),
        "mlcd --version": ([mlcd_bin, "--version"], None),
        "mlcd status (no-op project)": ([mlcd_bin, "status"], noop),
        f"mlcd runs list ({args.runs:,} runs)": ([mlcd_bin, "runs", "list"], many),
        "import mlcd -> first committed metric": ([py, "-c", FIRST_METRIC], noop),
    }
    dvc = shutil.which("dvc", path=str(Path(py).parent)) or shutil.which("dvc")
    if dvc:
        cases["dvc --version (anchor)"] = ([dvc, "--version"], None)
    if args.mlflow:
        cases["import mlflow (anchor)"] = ([args.mlflow, "-c", "import mlflow"], None)
    slow_env = {**env, "MLCD_NO_FAST_STORE": "1"}
    rows = []
    for name, (argv, cwd) in cases.items():
        walls, cpus = time_both(argv, args.reps, cwd=cwd, env=env)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        rows.append((name, wall, cpu))
        report("startup", case=name, median_s=round(wall, 4), cpu_s=round(cpu, 4), reps=args.reps)
    for name, (argv, cwd) in {
        f"mlcd runs list ({args.runs:,} runs), SQLAlchemy path": (
            [mlcd_bin, "runs", "list"],
            many,
        ),
    }.items():
        walls, cpus = time_both(argv, args.reps, cwd=cwd, env=slow_env)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        rows.append((name, wall, cpu))
        report("startup", case=name, median_s=round(wall, 4), cpu_s=round(cpu, 4), reps=args.reps)
    for name, wall, cpu in newest_in_process(many, args.reps):
        rows.append((name, wall, cpu))
        report("startup", case=name, median_s=round(wall, 4), cpu_s=round(cpu, 4), reps=args.reps)
    load = os.getloadavg()
    print(f"\nload average (1/5/15 min) at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("\n| case | median wall (s) | median CPU (s) |\n|---|---:|---:|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
    for path in (noop, many):
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
