"""Full drift report: mlcd against Evidently's DataDriftPreset on the same data, same run.

Data: 20 numeric columns of N rows for reference and for current (standard normal; five
current columns shifted, so both tools have drift to find), written once as .npy and read
by both tools into pandas DataFrames before the clock starts. Timed:

* Evidently 0.7 (its own venv, default /work/bench-venvs/evidently: ``pip install evidently
  'pandas<3'``): ``Report([DataDriftPreset()]).run(current, reference)`` and ``.dict()``.
* mlcd, exact: the reference profile with every value (``sample_size=None``), the current
  window summarised in chunks of 100,000 rows, drift on every column (KS, normalised
  Wasserstein, PSI, Jensen–Shannon, chi-square on bins), data quality, and the JSON report.
* mlcd, defaults: the same with mlcd's defaults (a 100,000-value reference sample).
* mlcd HTML: rendering the plotly HTML page of that report (separately).

Each measurement runs in a fresh process, tools alternating; peak RSS is reported too.

Usage: python benchmarks/bench_drift.py [--rows 100000 1000000] [--reps 3]
       [--evidently-reps 3 1] [--evidently-python PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = 20
SHIFTED = 5
DEFAULT_EVIDENTLY = "/work/bench-venvs/evidently/bin/python"

_LOAD = """
import json, resource, sys, time
import numpy as np, pandas as pd
folder = sys.argv[1]
names = [f"f{i}" for i in range(COLUMNS)]
ref = pd.DataFrame(np.load(folder + "/ref.npy"), columns=names)
cur = pd.DataFrame(np.load(folder + "/cur.npy"), columns=names)
loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
""".replace("COLUMNS", str(COLUMNS))

EVIDENTLY = (
    _LOAD
    + """
from evidently import Report
from evidently.presets import DataDriftPreset
start = time.perf_counter()
result = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
seconds = time.perf_counter() - start
count = result["metrics"][0]["value"]["count"]
print(json.dumps({"seconds": seconds, "drifted": count, "loaded_mb": loaded_mb,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
)

MLCD = (
    _LOAD
    + """
sys.path.insert(0, sys.argv[3])
mode = sys.argv[2]
from mlcd.monitor.current import summarise_window
from mlcd.monitor.drift import DriftSettings, detect_drift
from mlcd.monitor.profile import build_profile, DEFAULT_SAMPLE_SIZE
from mlcd.monitor.quality import assess_quality
from mlcd.monitor.report import to_html, to_json
from mlcd.monitor.run import MonitorReport, Subject
from mlcd.monitor.window import Window
import scipy.stats, scipy.special  # imports are not part of the timing (Evidently's neither)
exact = mode == "exact"
start = time.perf_counter()
profile = build_profile(ref, sample_size=None if exact else DEFAULT_SAMPLE_SIZE)
chunks = (cur.iloc[i : i + 100_000] for i in range(0, len(cur), 100_000))
summary = summarise_window(profile, chunks, max_values=None if exact else 1_000_000)
drift = detect_drift(profile, summary.columns, DriftSettings(max_values=None))
quality = assess_quality(profile, summary)
result = MonitorReport(Subject("bench"), Window(), summary, {"rows": profile.rows}, drift,
                       quality, None, [], time.time())
text = to_json(result)
seconds = time.perf_counter() - start
html_start = time.perf_counter()
page = to_html(result)
html_seconds = time.perf_counter() - html_start
print(json.dumps({"seconds": seconds, "html_seconds": html_seconds,
                  "drifted": len(drift.drifted), "loaded_mb": loaded_mb,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
)


def make_data(folder: Path, rows: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    np.save(folder / "ref.npy", rng.standard_normal((rows, COLUMNS)))
    current = rng.standard_normal((rows, COLUMNS))
    current[:, :SHIFTED] += 0.5
    np.save(folder / "cur.npy", current)


def run(python: str, code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, check=False, timeout=3600
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reps", type=int, default=3, help="mlcd runs per size")
    parser.add_argument(
        "--evidently-reps", type=int, nargs="+", default=[3, 1], help="Evidently runs per size"
    )
    parser.add_argument("--evidently-python", default=DEFAULT_EVIDENTLY)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10,000 rows, one run each")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.reps, args.evidently_reps = [10_000], 1, [1]
    have_evidently = not args.no_evidently and Path(args.evidently_python).exists()
    src = str(ROOT / "src")
    table = []
    for index, rows in enumerate(args.rows):
        ev_reps = args.evidently_reps[min(index, len(args.evidently_reps) - 1)]
        with tempfile.TemporaryDirectory(prefix="mlcd-bench-drift-") as tmp:
            make_data(Path(tmp), rows)
            results: dict[str, list[dict[str, float]]] = {"exact": [], "defaults": [], "ev": []}
            for rep in range(max(args.reps, ev_reps)):
                if rep < args.reps:
                    results["exact"].append(run(sys.executable, MLCD, tmp, "exact", src))
                    results["defaults"].append(run(sys.executable, MLCD, tmp, "defaults", src))
                if have_evidently and rep < ev_reps:
                    results["ev"].append(run(args.evidently_python, EVIDENTLY, tmp))
        summary: dict[str, float | int | None] = {"rows": rows, "columns": COLUMNS}
        for name, runs in results.items():
            if not runs:
                continue
            summary[f"{name}_s"] = median([r["seconds"] for r in runs])
            summary[f"{name}_peak_mb"] = max(r["peak_mb"] for r in runs)
            summary[f"{name}_data_mb"] = runs[0]["loaded_mb"]
            summary[f"{name}_drifted"] = runs[0]["drifted"]
            summary[f"{name}_runs"] = len(runs)
        summary["html_s"] = median([r["html_seconds"] for r in results["exact"]])
        if results["ev"]:
            summary["speedup_exact"] = summary["ev_s"] / summary["exact_s"]  # type: ignore[operator]
            summary["speedup_defaults"] = summary["ev_s"] / summary["defaults_s"]  # type: ignore[operator]
        report("drift", **summary)
        table.append(summary)
    print()
    print(
        f"{'rows':>10} {'evidently s':>12} {'mlcd exact s':>13} {'mlcd default s':>15} "
        f"{'speed-up':>9} {'html s':>7} {'peak MB ev/mlcd':>16}"
    )
    for s in table:
        ev = s.get("ev_s")
        ev_text = "—" if ev is None else f"{ev:.2f}"
        speed = "" if ev is None else f"{s['speedup_exact']:.0f}x"
        peak_ev = "—" if ev is None else f"{s['ev_peak_mb']:.0f}"
        print(
            f"{s['rows']:>10,} {ev_text:>12} {s['exact_s']:>13.2f} {s['defaults_s']:>15.2f} "
            f"{speed:>9} {s['html_s']:>7.2f} {peak_ev:>7}/{s['exact_peak_mb']:.0f}"
        )


if __name__ == "__main__":
    main()
