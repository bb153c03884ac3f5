"""Autologging overhead: a 200-tree LightGBM fit, plain vs ``mlcd.autolog()`` vs ``mlflow.autolog()``.

The fit is ``LGBMClassifier(n_estimators=200).fit(X, y, eval_set=[(X_val, y_val)])`` on
synthetic data (50,000 x 20 and a 10,000-row validation set), so every per-iteration eval
metric, the params, the importances and the model package are recorded. Each variant runs in
its own fresh interpreter (both tools patch LightGBM process-wide); the rounds interleave the
three variants so that a busy machine slows them alike. In each interpreter the first fit is
timed apart (it starts the run, opens the store, imports the serialisers) and the following
fits are the steady state; the overhead is the ratio of steady-state medians. mlcd logs to the
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

    def fit():
        model = lgb.LGBMClassifier(
            n_estimators=args["trees"], n_jobs=args["threads"], verbose=-1, random_state=0
        )
        start = time.perf_counter()
        model.fit(X_train, y_train, eval_set=[(X_val, y_val)])
        return time.perf_counter() - start

    first = fit()
    steady = [fit() for _ in range(args["fits"])]
    if variant == "mlcd":
        mlcd.flush()
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
    parser.add_argument("--rounds", type=int, help="interpreters per variant (default 5)")
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
    rounds = args.rounds or (2 if args.quick else 5)
    variants = [v for v in VARIANTS if not (args.no_mlflow and v == "mlflow")]
    first: dict[str, list[float]] = {v: [] for v in variants}
    steady: dict[str, list[float]] = {v: [] for v in variants}
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
    plain = median(steady["plain"])
    rows = []
    for variant in variants:
        fit_s = median(steady[variant])
        first_s = median(first[variant])
        overhead = fit_s / plain - 1.0
        rows.append((variant, fit_s, overhead, first_s, len(steady[variant])))
        report(
            "autolog",
            variant=variant,
            fit_s=round(fit_s, 4),
            overhead=round(overhead, 4),
            first_fit_s=round(first_s, 4),
            timed_fits=len(steady[variant]),
            quick=args.quick,
            **settings,
            **versions,
        )
    if args.json:
        return
    label = {"plain": "plain fit", "mlcd": "mlcd.autolog()", "mlflow": "mlflow.autolog()"}
    lines = [
        "| variant | fit, median (s) | overhead vs plain | first fit in a process (s) | fits |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant, fit_s, overhead, first_s, count in rows:
        shown = "-" if variant == "plain" else f"{overhead:+.1%}"
        lines.append(f"| {label[variant]} | {fit_s:.3f} | {shown} | {first_s:.3f} | {count} |")
    print("\n" + "\n".join(lines))
    print(
        f"\n{settings['rows']:,} x {settings['features']} rows, {settings['trees']} trees, "
        f"{settings['threads']} thread(s); " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


if __name__ == "__main__":
    main()
