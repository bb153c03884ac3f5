"""Live monitoring gauges: what they cost the server, measured with them on and off.

1. In process: feeding a rolling window from prediction-log entries (per row, single-row
   requests as the writer drains them) and one refresh (a snapshot of a full 10,000-row
   window, 30 float columns plus prediction and proba, drift against the stored profile).
2. Over HTTP: `mlcd serve --workers 2` answering single-row requests from `wrk` (16
   connections), the same model and project, with the version's reference profile stored:
   live gauges ON (default window 10,000 rows, refresh every 5 s) against OFF
   (`monitor.live_window_rows: 0`), alternating, prediction log on in both.

    .venv/bin/python benchmarks/bench_live_gauges.py [--quick] [--rounds N] [--seconds S]

Prints one JSON line per measurement, then a table of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import free_port, stop, wait_http, wrk


def data() -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


def in_process(X: Any, y: Any, repeats: int) -> dict[str, float]:
    """Per-row feed cost and the cost of one refresh of a full window."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlcd.monitor.drift import DriftSettings
    from mlcd.monitor.live import LiveMonitor
    from mlcd.monitor.profile import build_profile
    from mlcd.serve.gauges import _feed
    from mlcd.serve.predlog import LogEntry

    matrix = X.to_numpy()
    model = LogisticRegression(max_iter=5000).fit(matrix, y)
    reference = X.assign(prediction=model.predict(matrix), proba=model.predict_proba(matrix)[:, 1])
    monitor = LiveMonitor(build_profile(reference), DriftSettings(), window_rows=10_000)
    rng = np.random.default_rng(0)
    entries = []
    for i in rng.integers(0, len(matrix), 2000):
        row = matrix[i : i + 1]
        entries.append(
            LogEntry("bc", 1, time.time(), 1.0, "ok", [str(i)],
                     {c: row[:, j] for j, c in enumerate(X.columns)},
                     model.predict(row), model.predict_proba(row)[:, 1], matrix=row)
        )  # fmt: skip
    feed, snap = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        _feed(monitor, entries)
        feed.append((time.perf_counter() - started) / len(entries))
    for _ in range(max(5, repeats)):
        _feed(monitor, entries)
        started = time.perf_counter()
        monitor.snapshot()
        snap.append(time.perf_counter() - started)
    return {
        "feed_us_per_row": statistics.median(feed) * 1e6,
        "refresh_ms_10k_rows": statistics.median(snap) * 1000,
    }


def project(work: Path, X: Any, y: Any) -> Path:
    """A project with one registered model whose version has a stored reference profile."""
    from sklearn.linear_model import LogisticRegression

    from mlcd.project import Project
    from mlcd.registration import register_declared_models
    from mlcd.registry import save_model, set_alias

    root = work / "proj"
    subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "init", str(root)], check=True, capture_output=True
    )
    save_model(LogisticRegression(max_iter=5000).fit(X, y), root / "pkg", sample_input=X.head(100))
    X.assign(target=y).to_csv(root / "reference.csv", index=False)
    with open(root / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(
            "\nmodels:\n  bc:\n    path: pkg\n    reference_data: reference.csv\n"
            "    target: target\n"
        )
    with Project.open(root) as opened:
        (done,) = register_declared_models(root, opened.config, opened.store, opened.objects)
        assert done.reference_digest, "no reference profile was stored"
        set_alias(opened.store, "bc", "champion", 1)
    return root


def serve(root: Path, gauges: bool) -> tuple[subprocess.Popen[bytes], str]:
    config = root / "mlcd.yaml"
    text = config.read_text().split("\n# bench\n")[0]
    if not gauges:
        text += "\n# bench\nmonitor:\n  live_window_rows: 0\n"
    config.write_text(text)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "bc", "--port", str(port),
         "--workers", "2", "--log-level", "warning"],
        cwd=root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/v2/health/ready", process)
    deadline = time.monotonic() + 120
    while metrics(base).count('mlcd_serve_model_version{model="bc"') < 2:  # both workers
        assert time.monotonic() < deadline, "the second worker did not load the model"
        time.sleep(0.1)
    return process, base


def metrics(base: str) -> str:
    """The server's /metrics text."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        return str(response.read().decode())


def cpu_seconds(group: int) -> float:
    """User + system CPU time of every process in a process group (the server's workers)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    rounds, seconds = (1, 5) if args.quick else (args.rounds, args.seconds)
    X, y = data()
    results: list[dict[str, Any]] = []
    micro = in_process(X, y, 5 if args.quick else 15)
    print(json.dumps({"bench": "in_process", **micro}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        root = project(work, X, y)
        body = [X.iloc[0].to_dict()]
        for round_ in range(rounds):
            for gauges in (True, False) if round_ % 2 == 0 else (False, True):
                process, base = serve(root, gauges)
                try:
                    url = f"{base}/v1/models/bc/predict"
                    wrk(url, body, 16, 2, work)  # warm-up
                    cpu = cpu_seconds(process.pid)
                    result = wrk(url, body, 16, seconds, work)
                    cpu = cpu_seconds(process.pid) - cpu
                    # CPU per request is far less sensitive than requests/s to other
                    # processes sharing the machine.
                    result["server_cpu_us_per_request"] = cpu / (result["rps"] * seconds) * 1e6
                    text = metrics(base)
                finally:
                    stop(process)
                exported = "mlcd_monitor_drift_share{" in text
                assert exported == gauges, "the gauges are not in the state the run expects"
                row = {"bench": "http", "gauges": gauges, "round": round_, **result}
                print(json.dumps(row), flush=True)
                results.append(row)
    print()
    print(f"feed: {micro['feed_us_per_row']:.1f} µs per row (single-row requests, 32 columns)")
    print(f"refresh: {micro['refresh_ms_10k_rows']:.1f} ms per snapshot of a 10,000-row window")
    print()
    print("| live gauges | requests/s | p50 ms | p99 ms | server CPU µs/request | errors |")
    print("|---|---|---|---|---|---|")
    for gauges in (True, False):
        runs = [r for r in results if r["gauges"] == gauges]
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        cpu = statistics.median(r["server_cpu_us_per_request"] for r in runs)
        errors = sum(r["non_2xx"] for r in runs)
        print(
            f"| {'on' if gauges else 'off'} | {rps:,.0f} | {p50:.2f} | {p99:.1f} | {cpu:.0f} "
            f"| {errors} |"
        )


if __name__ == "__main__":
    main()
