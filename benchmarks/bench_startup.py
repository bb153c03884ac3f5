"""Start-up cost: `mlcd --help` and `import mlcd` against `python -c pass` (medians).

Usage: python benchmarks/bench_startup.py [--reps 20]
For the anchor, pass --mlflow PYTHON (a python with mlflow installed) to time `import mlflow`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report, time_command


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--mlflow", help="a python interpreter that has mlflow installed")
    args = parser.parse_args()
    py = sys.executable
    mlcd_bin = shutil.which("mlcd", path=str(Path(py).parent)) or "mlcd"
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "import mlcd": [py, "-c", "import mlcd"],
        "mlcd --help": [mlcd_bin, "--help"],
        "mlcd --version": [mlcd_bin, "--version"],
    }
    if args.mlflow:
        cases["import mlflow (anchor)"] = [args.mlflow, "-c", "import mlflow"]
    rows = []
    base = None
    for name, argv in cases.items():
        value = median(time_command(argv, args.reps))
        base = value if base is None else base
        rows.append((name, value))
        report("startup", case=name, median_s=round(value, 4), reps=args.reps)
    print("\n| case | median (s) | over `python -c pass` (s) |\n|---|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} | {value - (base or 0):.3f} |")


if __name__ == "__main__":
    main()
