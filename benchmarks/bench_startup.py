"""Start-up cost: `mlcd --help`, `mlcd status` on a no-op project and `import mlcd` against
`python -c pass` and, in the same run, `dvc --version` (the anchor; medians).

Usage: python benchmarks/bench_startup.py [--reps 20]
For the MLflow anchor, pass --mlflow PYTHON (a python with mlflow installed) to time `import
mlflow`. `mlcd status` runs in a fresh `mlcd init` project with one stage, up to date.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
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
    dvc = shutil.which("dvc", path=str(Path(py).parent)) or shutil.which("dvc")
    if dvc:
        cases["dvc --version (anchor)"] = [dvc, "--version"]
    if args.mlflow:
        cases["import mlflow (anchor)"] = [args.mlflow, "-c", "import mlflow"]
    project = Path(tempfile.mkdtemp(prefix="mlcd-startup-"))
    subprocess.run([mlcd_bin, "init"], cwd=project, check=True, capture_output=True)
    (project / "mlcd.yaml").write_text(
        "version: 1\nstages:\n  hello:\n    cmd: python -c \"open('out.txt', 'w').write('hi')\"\n"
        "    outs: [out.txt]\n"
    )
    subprocess.run([mlcd_bin, "run"], cwd=project, check=True, capture_output=True)
    cases["mlcd status (no-op project)"] = [mlcd_bin, "status"]
    rows = []
    base = None
    for name, argv in cases.items():
        where = {"cwd": project} if name.startswith("mlcd status") else {}
        value = median(time_command(argv, args.reps, **where))
        base = value if base is None else base
        rows.append((name, value))
        report("startup", case=name, median_s=round(value, 4), reps=args.reps)
    print("\n| case | median (s) | over `python -c pass` (s) |\n|---|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} | {value - (base or 0):.3f} |")


if __name__ == "__main__":
    main()
