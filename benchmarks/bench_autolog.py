"""Autologging overhead: a 200-tree LightGBM fit, plain vs ``mlcd.autolog()`` vs ``mlflow.autolog()``.

The fit is ``LGBMClassifier(n_estimators=200).fit(X, y, eval_set=[(X_val, y_val)])`` on
synthetic data (50,000 x 20 and a 10,000-row validation set), so every per-iteration eval
metric, the params, the importances and the model package are recorded. Each variant runs in
its own fresh interpreter (both tools patch LightGBM process-wide); the rounds interleave the
three variants so that a busy machine slows them alike. In each interpreter the first fit is
timed apart (it starts the run, opens the store, imports the serialisers) and the following
fits are the steady state; the overhead is the ratio of steady-state medians. Each fit is
measured in wall time and in CPU time (the process's user + system time of all its threads,
plus its waited-for children: MLflow's requirements inference runs a subprocess); on a
shared, overloaded machine the CPU time is the figure that does not depend on the neighbours.
mlcd's fit includes an ``mlcd.flush()``, so its background writes are counted in it. mlcd logs to the
embedded store of a fresh folder (``./.mlcd``), MLflow to a file store in a temporary folder,
both with their defaults (models logged, signatures inferred)::

    nice -n 5 .venv/bin/python benchmarks/bench_autolog.py [--quick] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

DRIVER = textwrap.dedent(
    """
    import json, logging, os, sys, time, warnings
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    args = json.loads(sys.argv[1])
    import numpy as np
    rng = np.random.RandomState(0)
    n, d = args["rows"], args["features"]
    X = rng.standard_normal((n + n // 5, d))
    w = rng.standard_normal(d)
    y = ((X @ w + rng.standard_normal(len(X))) > 0).astype(int)
    X_train, y_train, X_val, y_val = X[:n], y[:n], X[n:], y[n:]
    variant = args["variant"]
    if variant == "mlcd":
        import mlcd
        mlcd.autolog(silent=True)
    elif variant == "mlflow":
        import mlflow
        mlflow.set_tracking_uri("file://" + os.path.join(args["work"], "mlruns"))
        mlflow.autolog(silent=True)
    import lightgbm as lgb

    import resource

    def cpu():
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # MLflow's pip inference
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def fit():
        model = lgb.LGBMClassifier(
            n_estimators=args["trees"], n_jobs=args["threads"], verbose=-1, random_state=0
        )
        start, start_cpu = time.perf_counter(), cpu()
        model.fit(X_train, y_train, eval_set=[(X_val, y_val)])
        if variant == "mlcd":
            mlcd.flush()  # the background writes of this fit, counted in it
        return [time.perf_counter() - start, cpu() - start_cpu]

    first = fit()
    steady = [fit() for _ in range(args["fits"])]
    if variant == "mlcd":
        logged = len(os.listdir(os.path.join(".mlcd", "objects")))
    elif variant == "mlflow":
        logged = sum(len(files) for _, _, files in os.walk(os.path.join(args["work"], "mlruns")))
    else:
        logged = 0
    print(json.dumps({"first": first, "steady": steady, "logged": logged}))
    """
)

VARIANTS = ("plain", "mlcd", "mlflow")


def run_variant(variant: str, work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """One fresh interpreter: the first fit and ``fits`` steady-state fits of ``variant``."""
    folder = work / f"{variant}-{len(list(work.glob(variant + '-*')))}"
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
    env["OMP_NUM_THREADS"] = str(settings["threads"])
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses a file store without it
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            DRIVER,
            json.dumps({**settings, "variant": variant, "work": str(folder)}),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{result.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if variant != "plain" and not out["logged"]:  # a tool that silently logged nothing
        raise SystemExit(f"{variant} recorded no files:\n{result.stderr[-3000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--rounds", type=int, help="interpreters per variant (default 3)")
    parser.add_argument("--fits", type=int, help="steady-state fits per interpreter (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads (default 1)")
    parser.add_argument("--no-mlflow", action="store_true", help="plain and mlcd only")
    parser.add_argument("--json", action="store_true", help="JSON lines only, no table")
    args = parser.parse_args()
    settings = {
        "rows": 5_000 if args.quick else 50_000,
        "features": 20,
        "trees": 50 if args.quick else 200,
        "fits": args.fits or (2 if args.quick else 3),
        "threads": args.threads,
    }
    rounds = args.rounds or (2 if args.quick else 3)
    variants = [v for v in VARIANTS if not (args.no_mlflow and v == "mlflow")]
    first: dict[str, list[list[float]]] = {v: [] for v in variants}
    steady: dict[str, list[list[float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="mlcd-bench-autolog-") as tmp:
        for _ in range(rounds):
            for variant in variants:
                out = run_variant(variant, Path(tmp), settings)
                first[variant].append(out["first"])
                steady[variant].extend(out["steady"])

    import lightgbm

    versions = {"lightgbm": lightgbm.__version__}
    if "mlflow" in variants:
        import mlflow

        versions["mlflow"] = mlflow.__version__

    def med(points: list[list[float]], index: int) -> float:
        return median([p[index] for p in points])

    plain_wall, plain_cpu = med(steady["plain"], 0), med(steady["plain"], 1)
    rows = []
    for variant in variants:
        wall, cpu = med(steady[variant], 0), med(steady[variant], 1)
        first_wall = med(first[variant], 0)
        rows.append((variant, wall, wall / plain_wall - 1, cpu, cpu / plain_cpu - 1, first_wall))
        report(
            "autolog",
            variant=variant,
            wall_s=round(wall, 4),
            wall_overhead=round(wall / plain_wall - 1, 4),
            cpu_s=round(cpu, 4),
            cpu_overhead=round(cpu / plain_cpu - 1, 4),
            first_fit_wall_s=round(first_wall, 4),
            timed_fits=len(steady[variant]),
            quick=args.quick,
            **settings,
            **versions,
        )
    if args.json:
        return
    label = {"plain": "plain fit", "mlcd": "mlcd.autolog()", "mlflow": "mlflow.autolog()"}
    lines = [
        "| variant | CPU per fit (s) | CPU overhead | wall per fit (s) | wall overhead "
        "| first fit, wall (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant, wall, wall_over, cpu, cpu_over, first_wall in rows:
        cpu_shown = "-" if variant == "plain" else f"{cpu_over:+.1%}"
        wall_shown = "-" if variant == "plain" else f"{wall_over:+.1%}"
        lines.append(
            f"| {label[variant]} | {cpu:.3f} | {cpu_shown} | {wall:.3f} | {wall_shown} "
            f"| {first_wall:.3f} |"
        )
    print("\n" + "\n".join(lines))
    print(
        f"\n{settings['rows']:,} x {settings['features']}, {settings['trees']} trees, "
        f"{settings['threads']} thread(s), {rounds} interpreters x {settings['fits']} fits "
        "per variant; " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


if __name__ == "__main__":
    main()
