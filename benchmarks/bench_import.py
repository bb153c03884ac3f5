"""Importing an MLflow store: ``mlcd import mlflow`` on N runs (10 params, 10 metrics x 100 steps).

The MLflow SQLite store is built first and kept in a cache folder, so repetitions (and later
invocations) time only the import:

- ``--build api`` (default): every run through MLflow's client, ``create_run`` + one
  ``log_batch`` of its 10 params and 1,000 metric points + ``set_terminated``. MLflow's SQL
  store takes about a quarter of a second per run here, so 10,000 runs cost ~40 minutes once.
- ``--build clone``: ``--template`` runs through the client as above, then copied inside the
  database (new run ids, shifted times, values offset per copy) up to N: the same tables, the
  same shape, in seconds. The import reads it through the same client calls either way.

Each repetition imports into a fresh ``mlcd init`` project through the real CLI; one more
import into the last project times a re-import that finds nothing new. ``mlflow-export-import``
(MLflow's own copying tool) is timed in the same run when its package is importable.

    .venv/bin/python benchmarks/bench_import.py [--runs 10000] [--reps 3] [--build api|clone]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent


BUILDER = r"""
import json, logging, sys, time, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
args = json.loads(sys.argv[1])
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
client = MlflowClient(args["uri"])
exp = client.create_experiment("bench", artifact_location=args["artifacts"])
t0 = 1_700_000_000_000
for i in range(args["runs"]):
    start = t0 + i * 60_000
    run = client.create_run(exp, run_name=f"run-{i}", start_time=start, tags={"seed": str(i)})
    params = [Param(f"p{k}", str(k * 0.5 + i)) for k in range(args["params"])]
    metrics = [
        Metric(f"m{k}", (i % 97) * 0.01 + k + s / args["steps"], start + s * 10, s)
        for k in range(args["metrics"])
        for s in range(args["steps"])
    ]
    # log_batch takes at most 1,000 metrics a call
    for first in range(0, len(metrics), 1000):
        client.log_batch(
            run.info.run_id, metrics=metrics[first : first + 1000], params=params if first == 0 else []
        )
    client.set_terminated(run.info.run_id, end_time=start + 30_000)
print(json.dumps({"experiment": exp}))
"""


def _clone(db: Path, template: int, runs: int) -> None:
    """Copy the template runs inside the database until it holds ``runs`` runs."""
    conn = sqlite3.connect(db)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        sources = [r[0] for r in conn.execute("SELECT run_uuid FROM runs ORDER BY start_time")][
            :template
        ]
        copy = 0
        have = len(sources)
        conn.execute("BEGIN")
        while have < runs:
            copy += 1
            for old in sources:
                if have >= runs:
                    break
                new = uuid.uuid4().hex
                shift = copy * template * 60_000
                delta = copy * 0.001
                values = ", ".join(
                    {
                        "run_uuid": "?",
                        "name": "name || '-c' || ?",
                        "start_time": "start_time + ?",
                        "end_time": "end_time + ?",
                        "artifact_uri": "replace(artifact_uri, run_uuid, ?)",
                    }.get(c, c)
                    for c in columns
                )
                binds: list[Any] = []
                for c in columns:
                    if c == "run_uuid":
                        binds.append(new)
                    elif c == "name":
                        binds.append(str(copy))
                    elif c in ("start_time", "end_time"):
                        binds.append(shift)
                    elif c == "artifact_uri":
                        binds.append(new)
                conn.execute(
                    f"INSERT INTO runs ({', '.join(columns)}) SELECT {values} FROM runs "
                    "WHERE run_uuid = ?",
                    [*binds, old],
                )
                conn.execute(
                    "INSERT INTO params (key, value, run_uuid) "
                    "SELECT key, value, ? FROM params WHERE run_uuid = ?",
                    (new, old),
                )
                conn.execute(
                    "INSERT INTO tags (key, value, run_uuid) SELECT key, "
                    "CASE WHEN key = 'mlflow.runName' THEN value || '-c' || ? ELSE value END, ? "
                    "FROM tags WHERE run_uuid = ?",
                    (str(copy), new, old),
                )
                for table in ("metrics", "latest_metrics"):
                    conn.execute(
                        f"INSERT INTO {table} (key, value, timestamp, step, is_nan, run_uuid) "
                        f"SELECT key, value + ?, timestamp + ?, step, is_nan, ? FROM {table} "
                        "WHERE run_uuid = ?",
                        (delta, shift, new, old),
                    )
                have += 1
        conn.execute("COMMIT")
    finally:
        conn.close()


def build_store(args: argparse.Namespace) -> tuple[Path, float]:
    """The cached MLflow store for this shape (built if missing); returns it and build time."""
    cache = Path(args.cache).expanduser()
    shape = f"{args.runs}r-{args.params}p-{args.metrics}m-{args.steps}s-{args.build}"
    if args.build == "clone":
        shape += f"-t{args.template}"
    folder = cache / f"mlflow-{shape}"
    db = folder / "mlflow.db"
    if db.is_file() and (folder / "complete").is_file():
        return db, 0.0
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    first = args.runs if args.build == "api" else min(args.template, args.runs)
    spec = {
        "uri": f"sqlite:///{db}",
        "artifacts": str(folder / "artifacts"),
        "runs": first,
        "params": args.params,
        "metrics": args.metrics,
        "steps": args.steps,
    }
    subprocess.run([PYTHON, "-c", BUILDER, json.dumps(spec)], check=True, capture_output=True)
    if args.build == "clone" and args.runs > first:
        _clone(db, first, args.runs)
    (folder / "complete").write_text("ok\n")
    return db, time.perf_counter() - start


def _mlcd(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [PYTHON, "-m", "mlcd.cli.main", *argv], cwd=cwd, env=env, capture_output=True, text=True
    )


def time_import(db: Path, work: Path, reps: int) -> dict[str, Any]:
    """Median wall time of ``mlcd import mlflow`` into fresh projects, and of a re-import."""
    times: list[float] = []
    summary: dict[str, Any] = {}
    project = work
    for rep in range(reps):
        project = work / f"proj{rep}"
        init = _mlcd(["init", str(project)], work)
        if init.returncode != 0:
            raise SystemExit(init.stderr)
        start = time.perf_counter()
        result = _mlcd(["import", "mlflow", "--tracking-uri", f"sqlite:///{db}", "--json"], project)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        summary = json.loads(result.stdout)
    start = time.perf_counter()
    again = _mlcd(["import", "mlflow", "--tracking-uri", f"sqlite:///{db}", "--json"], project)
    reimport = time.perf_counter() - start
    if again.returncode != 0:
        raise SystemExit(again.stderr)
    added = json.loads(again.stdout)["runs"]["imported"]
    return {
        "times": [round(t, 2) for t in times],
        "median_s": round(median(times), 2),
        "reimport_s": round(reimport, 2),
        "reimport_added": added,
        "imported": summary["runs"],
    }


def time_export_import(db: Path, work: Path) -> dict[str, Any] | None:
    """MLflow's own copy tool (export the experiment, import it into a new store), if installed."""
    try:
        import mlflow_export_import  # noqa: F401
    except ImportError:
        return None
    out = work / "export"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "export-experiment"), "--experiment", "bench", "--output-dir", str(out)],
        env=env,
        check=True,
        capture_output=True,
    )
    exported = time.perf_counter() - start
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'copy.db'}"
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "import-experiment"), "--experiment-name", "bench", "--input-dir", str(out)],
        env=env,
        check=True,
        capture_output=True,
    )
    return {"export_s": round(exported, 2), "import_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--params", type=int, default=10)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--build", choices=("api", "clone"), default="api")
    parser.add_argument("--template", type=int, default=100, help="runs built by the API (clone)")
    parser.add_argument(
        "--no-anchor", action="store_true", help="skip mlflow-export-import (slow: its API)"
    )
    parser.add_argument(
        "--cache",
        default=os.environ.get("MLCD_BENCH_CACHE", "~/.cache/mlcd-bench"),
        help="where built MLflow stores are kept between runs",
    )
    args = parser.parse_args()
    db, built = build_store(args)
    with tempfile.TemporaryDirectory(prefix="mlcd-bench-import-") as tmp:
        work = Path(tmp)
        result = time_import(db, work, args.reps)
        print(f"mlcd import mlflow: {result}", flush=True)
        anchor = None if args.no_anchor else time_export_import(db, work)
    points = args.runs * args.metrics * args.steps
    print(
        f"mlcd import mlflow, {args.runs} runs ({points:,} metric points): "
        f"median {result['median_s']} s over {args.reps} ({result['times']}); "
        f"re-import {result['reimport_s']} s adding {result['reimport_added']}"
        + (f"; store built in {built:.0f} s ({args.build})" if built else "")
        + (
            f"; mlflow-export-import: export {anchor['export_s']} s + import {anchor['import_s']} s"
            if anchor
            else "; mlflow-export-import not installed"
        )
    )
    report(
        "import_mlflow",
        n_runs=args.runs,
        params=args.params,
        metrics=args.metrics,
        steps=args.steps,
        build=args.build,
        build_s=round(built, 1),
        **result,
        mlflow_export_import=anchor,
    )


if __name__ == "__main__":
    main()
