"""``make sweep``: a grid sweep of the churn model's learning rate and depth, in one command.

Not part of ``make demo``. In a fresh copy of ``examples/churn`` under ``.sweep/`` (recreated
each time, committed to a new git repository) it fills the warehouse, runs the pipeline once
(the baseline, committed), then runs

    mlcd exp sweep --grid train.learning_rate=0.03,0.08,0.2 --grid train.max_depth=2,4,6 \\
        --objective metrics.roc_auc --parallel 2 -n churn-grid

9 trials, each an experiment in its own workspace: ``prepare`` and ``featurize`` are restored
from the run cache (the trials change only ``train``'s params), ``train`` and ``evaluate`` run.
The sweep prints its trials best first (again later: ``mlcd exp show --sweep churn-grid``);
keep the best one with ``mlcd exp apply`` or ``mlcd exp branch``.

Usage: python examples/sweep.py [--workdir DIR] [--small] [--parallel N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "churn"
GRID = ["train.learning_rate=0.03,0.08,0.2", "train.max_depth=2,4,6"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    for key, value in (("NAME", "mlcd sweep"), ("EMAIL", "sweep@example.com")):
        env.setdefault(f"GIT_AUTHOR_{key}", value)
        env.setdefault(f"GIT_COMMITTER_{key}", value)
    return env


def _run(argv: list[str], work: Path, capture: bool = True) -> str:
    done = subprocess.run(argv, cwd=work, env=_env(), capture_output=capture, text=True)
    if done.returncode != 0:
        detail = f"\n{done.stdout}{done.stderr}" if capture else ""
        sys.exit(f"sweep: '{' '.join(argv)}' failed (exit {done.returncode}){detail}")
    return done.stdout if capture else ""


def _mlcd(work: Path, *args: str, capture: bool = True) -> str:
    return _run([sys.executable, "-m", "mlcd.cli.main", *args], work, capture)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".sweep")
    parser.add_argument("--small", action="store_true", help="1,500 customers instead of 6,000")
    parser.add_argument("--parallel", type=int, default=2, help="trials at once (default 2)")
    args = parser.parse_args()
    work: Path = args.workdir
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns(".mlcd", "__pycache__"))
    if args.small:
        params = work / "params.yaml"
        params.write_text(params.read_text().replace("n_customers: 6000", "n_customers: 1500"))
    # Experiment workspaces hold the project's files, not the warehouse (a database outside
    # git, read through a relative sqlite:/// URL): point the source at it by absolute path.
    config = work / "mlcd.yaml"
    source = "sqlite:///warehouse/shop.db"
    config.write_text(config.read_text().replace(source, f"sqlite:///{work / 'warehouse/shop.db'}"))
    _run(["git", "init", "-q", "-b", "main"], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-q", "-m", "churn example"], work)
    _run([sys.executable, "src/warehouse.py"], work)
    print(f"sweep: baseline pipeline run in {work} ...", file=sys.stderr)
    _mlcd(work, "run")
    _run(["git", "add", "mlcd.lock", "metrics", "plots", ".gitignore"], work)
    _run(["git", "add", "data/.gitignore", "models/.gitignore"], work)
    _run(["git", "commit", "-q", "-m", "baseline run"], work)

    command = ["exp", "sweep", "-n", "churn-grid", "--objective", "metrics.roc_auc"]
    for grid in GRID:
        command += ["--grid", grid]
    command += ["--parallel", str(args.parallel)]
    print(f"sweep: mlcd {' '.join(command)}", file=sys.stderr)
    started = time.monotonic()
    _mlcd(work, *command, capture=False)
    print(f"sweep: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(
        f"\nkeep the best trial: cd {work} && mlcd exp apply NAME (or: mlcd exp branch NAME "
        "BRANCH); compare: mlcd exp show --sort-by metrics.roc_auc",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
