"""Experiment tracking: mlcd against MLflow (SQLite backend), in the same run.

Cases, as in the issue: 10,000 individual ``log_metric`` calls; the same points as batches;
creating 2,000 runs with 5 params, 5 metrics and a tag each; a filtered search over them
(``metrics.roc_auc > 0.9 and params.model = 'gbm' and tags.branch = 'main'``); the import
time. mlcd alone: the same search over 100,000 runs.

MLflow runs in its own virtual environment (its pins must not touch ours), driven through a
subprocess that prints its timings as JSON::

    python3 -m venv /work/bench-venvs/mlflow && /work/bench-venvs/mlflow/bin/pip install mlflow
    .venv/bin/python benchmarks/bench_tracking.py [--quick] [--mlflow /work/bench-venvs/mlflow/bin/python]

mlcd's individual calls are timed two ways: the calls alone (what a training loop feels) and
the calls plus ``mlcd.flush()`` until every point is committed (what the ratio uses, since
MLflow's calls are synchronous).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report, time_command

FILTER = "metrics.roc_auc > 0.9 and params.model = 'gbm' and tags.branch = 'main'"
MODELS = ("gbm", "rf", "lr", "svm")
DEFAULT_MLFLOW = "/work/bench-venvs/mlflow/bin/python"


def _run_values(i: int, rnd: random.Random) -> tuple[dict[str, Any], dict[str, float], str]:
    params = {
        "model": MODELS[i % 4],
        "lr": rnd.choice((0.01, 0.03, 0.1, 0.3)),
        "depth": rnd.randint(2, 12),
        "subsample": round(rnd.uniform(0.5, 1.0), 2),
        "seed": i,
    }
    metrics = {
        "roc_auc": rnd.random(),
        "accuracy": rnd.random(),
        "f1": rnd.random(),
        "loss": rnd.random(),
        "precision": rnd.random(),
    }
    return params, metrics, "main" if i % 2 == 0 else "dev"


# ---------------------------------------------------------------------- MLflow (subprocess)
MLFLOW_DRIVER = textwrap.dedent(
    """
    import json, random, sys, time, logging, warnings
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    args = json.loads(sys.argv[1])
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    exec(args["values_src"])  # _run_values, MODELS: the same data as mlcd gets
    mlflow.set_tracking_uri(f"sqlite:///{args['work']}/mlflow.db")
    experiment = mlflow.set_experiment("bench")
    client = MlflowClient()
    out = {"version": mlflow.__version__}
    n = args["points"]

    times = []
    for _ in range(args["reps_individual"]):
        with mlflow.start_run():
            start = time.perf_counter()
            for step in range(n):
                mlflow.log_metric("loss", 0.5, step=step)
            times.append(time.perf_counter() - start)
    out["individual"] = times

    times = []
    for _ in range(args["reps"]):
        with mlflow.start_run() as run:
            stamp = int(time.time() * 1000)
            start = time.perf_counter()
            for batch in range(n // 1000):  # MLflow takes at most 1,000 metrics per batch
                client.log_batch(
                    run.info.run_id,
                    metrics=[Metric(f"m{j}", 0.5, stamp, batch) for j in range(1000)],
                )
            times.append(time.perf_counter() - start)
    out["batch"] = times

    rnd = random.Random(0)
    start = time.perf_counter()
    for i in range(args["runs"]):
        params, metrics, branch = _run_values(i, rnd)
        with mlflow.start_run():
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tag("branch", branch)
    out["create_runs"] = time.perf_counter() - start

    ids = [experiment.experiment_id]
    entities, frames = [], []
    for _ in range(args["search_reps"]):
        start = time.perf_counter()
        found = client.search_runs(ids, args["filter"], max_results=1000)
        entities.append(time.perf_counter() - start)
        start = time.perf_counter()
        frame = mlflow.search_runs(experiment_ids=ids, filter_string=args["filter"])
        frames.append(time.perf_counter() - start)
    out["search_entities"] = entities
    out["search_frame"] = frames
    out["matches"] = len(found)
    assert len(frame) == len(found)
    print("@@" + json.dumps(out))
    """
)


def _values_source() -> str:
    import inspect

    return f"from typing import Any\nMODELS = {MODELS!r}\n" + inspect.getsource(_run_values)


def run_mlflow(python: str, work: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """Run the MLflow cases in its own interpreter; returns the raw timings."""
    work.mkdir(parents=True, exist_ok=True)
    args = {**sizes, "work": str(work), "filter": FILTER, "values_src": _values_source()}
    result = subprocess.run(
        [python, "-c", MLFLOW_DRIVER, json.dumps(args)],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"},
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("@@")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"the MLflow driver failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(line[2:]))


# ---------------------------------------------------------------------- mlcd (in process)
def run_mlcd(work: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """The same cases through mlcd's public API, on a fresh project's SQLite store."""
    import mlcd
    from mlcd.store import Store

    root = work / "project"
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlcd.yaml").write_text("{}\n")
    n = sizes["points"]
    out: dict[str, Any] = {}

    calls, committed = [], []
    for _ in range(sizes["reps"]):
        with mlcd.start_run(project=root):
            start = time.perf_counter()
            for step in range(n):
                mlcd.log_metric("loss", 0.5, step=step)
            calls.append(time.perf_counter() - start)
            mlcd.flush()
            committed.append(time.perf_counter() - start)
    out["individual_calls"], out["individual"] = calls, committed

    times = []
    for _ in range(sizes["reps"]):
        with mlcd.start_run(project=root):
            start = time.perf_counter()
            for batch in range(n // 1000):
                mlcd.log_metrics({f"m{j}": 0.5 for j in range(1000)}, step=batch)
            mlcd.flush()
            times.append(time.perf_counter() - start)
    out["batch"] = times

    rnd = random.Random(0)
    start = time.perf_counter()
    for i in range(sizes["runs"]):
        params, metrics, branch = _run_values(i, rnd)
        with mlcd.start_run(project=root):
            mlcd.log_params(params)
            mlcd.log_metrics(metrics)
            mlcd.set_tag("branch", branch)
    out["create_runs"] = time.perf_counter() - start

    store = Store("sqlite:///.mlcd/mlcd.db", root)
    try:
        out["search"], out["matches"] = _time_search(store, sizes["search_reps"], 1000)
        api = []
        for _ in range(sizes["search_reps"]):
            start = time.perf_counter()
            mlcd.search_runs(FILTER, limit=1000, project=root)
            api.append(time.perf_counter() - start)
        out["search_api"] = api
    finally:
        store.dispose()
    return out


def _time_search(store: Any, reps: int, limit: int) -> tuple[list[float], int]:
    """Median-ready times of a filtered search with data; returns them and the total matches."""
    from mlcd.tracking.query import count, search

    times = []
    for _ in range(reps):
        start = time.perf_counter()
        with store.read() as conn:
            search(conn, FILTER, limit=limit)
        times.append(time.perf_counter() - start)
    with store.read() as conn:
        return times, count(conn, FILTER)


def build_big_store(path: Path | str, runs: int) -> Any:
    """A store with ``runs`` finished runs like the 2,000 above, written in bulk (``path``:
    a SQLite file, or a PostgreSQL URL)."""
    from mlcd.store import Store
    from mlcd.store.runs import _as_number
    from mlcd.store.tables import run_latest_metrics, run_metrics, run_params, run_tags
    from mlcd.store.tables import runs as runs_table

    store = Store(path if isinstance(path, str) else f"sqlite:///{path}")
    rnd = random.Random(1)
    now = time.time()
    chunk = 5000
    for first in range(0, runs, chunk):
        rows: dict[str, list[dict[str, Any]]] = {
            "runs": [],
            "params": [],
            "metrics": [],
            "tags": [],
        }
        for i in range(first, min(runs, first + chunk)):
            run_id = f"{i:032x}"
            params, metrics, branch = _run_values(i, rnd)
            started = now - (runs - i)
            rows["runs"].append(
                {
                    "id": run_id,
                    "name": None,
                    "kind": "manual",
                    "status": "finished",
                    "parent_id": None,
                    "started_at": started,
                    "ended_at": started + 1,
                    "git_commit": None,
                    "git_dirty": None,
                    "user": "bench",
                    "heartbeat_at": started,
                }
            )
            rows["params"] += [
                {"run_id": run_id, "key": k, "value": str(v), "value_num": _as_number(v)}
                for k, v in params.items()
            ]
            rows["metrics"] += [
                {"run_id": run_id, "key": k, "value": v, "step": 0, "timestamp": started}
                for k, v in metrics.items()
            ]
            rows["tags"].append({"run_id": run_id, "key": "branch", "value": branch})
        with store.write() as conn:
            conn.execute(runs_table.insert(), rows["runs"])
            conn.execute(run_params.insert(), rows["params"])
            conn.execute(run_metrics.insert(), rows["metrics"])
            conn.execute(run_latest_metrics.insert(), rows["metrics"])
            conn.execute(run_tags.insert(), rows["tags"])
    return store


def _pg_search(server_url: str, runs: int, reps: int) -> dict[int, float]:
    """The large search on a scratch PostgreSQL database, vacuumed and analysed as
    autovacuum leaves a table in use (index-only scans need its visibility map)."""
    import psycopg

    name = f"mlcd_bench_{os.getpid()}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        store = build_big_store(url, runs)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        try:
            return {
                limit: 1000 * median(_time_search(store, reps, limit)[0]) for limit in (100, 1000)
            }
        finally:
            store.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--mlflow", default=DEFAULT_MLFLOW, help="a python with mlflow installed")
    parser.add_argument("--no-mlflow", action="store_true", help="measure mlcd only")
    parser.add_argument("--big", type=int, help="runs in the large search case (default 100000)")
    parser.add_argument(
        "--pg",
        metavar="URL",
        help="also time the large search on PostgreSQL: a server URL such as "
        "postgresql://postgres@127.0.0.1:5432/test (a scratch database is created and dropped)",
    )
    args = parser.parse_args()
    sizes = {
        "points": 1000 if args.quick else 10_000,
        "runs": 200 if args.quick else 2000,
        "reps": 3 if args.quick else 5,
        "reps_individual": 1,  # MLflow: ~50 s per 10,000 individual calls
        "search_reps": 5 if args.quick else 15,
    }
    big = args.big or (10_000 if args.quick else 100_000)
    use_mlflow = not args.no_mlflow and Path(args.mlflow).exists()
    results: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory(prefix="mlcd-bench-tracking-") as tmp:
        work = Path(tmp)
        mlcd_raw = run_mlcd(work / "mlcd", sizes)
        mlflow_raw = run_mlflow(args.mlflow, work / "mlflow", sizes) if use_mlflow else None
        n = sizes["points"]

        def rate(seconds: list[float]) -> float:
            return n / median(seconds)

        results["log_metric calls only (points/s)"] = {"mlcd": rate(mlcd_raw["individual_calls"])}
        results["log_metric individual, committed (points/s)"] = {
            "mlcd": rate(mlcd_raw["individual"])
        }
        results["log batches of 1,000, committed (points/s)"] = {"mlcd": rate(mlcd_raw["batch"])}
        results[f"create {sizes['runs']:,} runs (s)"] = {"mlcd": mlcd_raw["create_runs"]}
        results[f"search {sizes['runs']:,} runs, open store (ms)"] = {
            "mlcd": 1000 * median(mlcd_raw["search"])
        }
        results[f"search {sizes['runs']:,} runs, mlcd.search_runs (ms)"] = {
            "mlcd": 1000 * median(mlcd_raw["search_api"])
        }
        if mlflow_raw is not None:
            results["log_metric individual, committed (points/s)"]["mlflow"] = rate(
                mlflow_raw["individual"]
            )
            results["log batches of 1,000, committed (points/s)"]["mlflow"] = rate(
                mlflow_raw["batch"]
            )
            results[f"create {sizes['runs']:,} runs (s)"]["mlflow"] = mlflow_raw["create_runs"]
            results[f"search {sizes['runs']:,} runs, open store (ms)"]["mlflow"] = 1000 * median(
                mlflow_raw["search_entities"]
            )
            results[f"search {sizes['runs']:,} runs, mlcd.search_runs (ms)"]["mlflow"] = (
                1000 * median(mlflow_raw["search_frame"])
            )
            if mlflow_raw["matches"] != mlcd_raw["matches"]:
                raise SystemExit(
                    f"the searches disagree: mlcd {mlcd_raw['matches']}, "
                    f"MLflow {mlflow_raw['matches']} runs"
                )

        big_store = build_big_store(work / "big.db", big)
        try:
            for limit in (100, 1000):
                times, matches = _time_search(big_store, sizes["search_reps"], limit)
                results[f"search {big:,} runs ({matches:,} match), first {limit} (ms)"] = {
                    "mlcd": 1000 * median(times)
                }
        finally:
            big_store.dispose()
        if args.pg:
            for limit, ms in _pg_search(args.pg, big, sizes["search_reps"]).items():
                results[f"search {big:,} runs on PostgreSQL, first {limit} (ms)"] = {"mlcd": ms}

    py = sys.executable
    imports = {"mlcd": median(time_command([py, "-c", "import mlcd; mlcd.log_metric"], 10))}
    if use_mlflow:
        imports["mlflow"] = median(time_command([args.mlflow, "-c", "import mlflow"], 10))
    baseline = median(time_command([py, "-c", "pass"], 10))
    results["import (s, over python -c pass)"] = {k: v - baseline for k, v in imports.items()}

    version = mlflow_raw["version"] if mlflow_raw else None
    lines = [
        f"| case | mlcd | MLflow {version or '(not run)'} | mlcd advantage |",
        "|---|---:|---:|---:|",
    ]
    for case, values in results.items():
        ours, theirs = values["mlcd"], values.get("mlflow")
        higher_is_better = "points/s" in case
        ratio = ""
        if theirs:
            ratio = f"{(ours / theirs if higher_is_better else theirs / ours):,.1f}x"
        report(
            "tracking",
            case=case,
            mlcd=round(ours, 4),
            mlflow=None if theirs is None else round(theirs, 4),
            ratio=ratio or None,
            quick=args.quick,
        )
        lines.append(f"| {case} | {_fmt(ours)} | {_fmt(theirs)} | {ratio} |")
    print("\n" + "\n".join(lines))
    print(f"\nmatches: {mlcd_raw['matches']} of {sizes['runs']} runs; filter: {FILTER}")


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"


if __name__ == "__main__":
    main()
