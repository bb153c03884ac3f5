"""The runs page at scale: ``mlcd ui`` against ``mlflow server`` on the same 100,000 runs.

The runs (5 params, 5 metrics each) are written once into an MLflow SQLite store (100 through
MLflow's client, the rest cloned inside the database, see ``bench_import``) and imported into
an mlcd project with ``mlcd import mlflow``, so both tools serve the same data from their own
SQLite store. Then, alternating the two, each case is timed end to end:

- ``first page``: mlcd's ``GET /runs`` (the server renders the first 50 rows as HTML) against
  the search MLflow's UI sends for its first page (``POST /ajax-api/2.0/mlflow/runs/search``,
  ``max_results: 100``, newest first);
- ``filtered, sorted``: ``metrics.m1 > 1.5 and params.p0 = '...'`` ordered by ``metrics.m2``,
  the same filter in each tool's language;
- ``browser``: with ``--browser``, the first page loaded in Debian's chromium until the rows
  are on screen (mlcd only: MLflow's page is a client-side application whose readiness we
  cannot observe the same way).

The resident memory of ``mlcd ui`` is read from ``/proc`` after the runs.

    .venv/bin/python benchmarks/bench_ui.py [--runs 100000] [--reps 7] [--browser]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report
from bench_import import build_store

PYTHON = sys.executable
BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer")


def _get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
    return time.perf_counter() - start


def _post(url: str, body: dict[str, Any]) -> float:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        data = json.loads(response.read())
    elapsed = time.perf_counter() - start
    if "runs" not in data:
        raise SystemExit(f"MLflow answered without runs: {str(data)[:200]}")
    return elapsed


def _rss_mib(pid: int) -> float:
    total = 0
    for child in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _browser(url: str, reps: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=["--no-sandbox"]
        )
        for _ in range(reps):
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("tr.run-row")
            times.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--cache", default=os.environ.get("MLCD_BENCH_CACHE", "~/.cache/mlcd-bench"))
    args = parser.parse_args()
    store_args = argparse.Namespace(
        runs=args.runs, params=5, metrics=5, steps=1, build="clone", template=100, cache=args.cache
    )
    db, built = build_store(store_args)
    print(f"MLflow store: {db} ({args.runs} runs{'' if not built else f', built in {built:.0f} s'})")
    with tempfile.TemporaryDirectory(prefix="mlcd-bench-ui-") as tmp:
        work = Path(tmp)
        project = work / "project"
        subprocess.run([str(BIN / "mlcd"), "init", str(project)], check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(
            [str(BIN / "mlcd"), "import", "mlflow", "--tracking-uri", f"sqlite:///{db}"],
            cwd=project, check=True, capture_output=True,
        )  # fmt: skip
        print(f"imported into mlcd in {time.perf_counter() - start:.0f} s")
        ui_port, mlflow_port = _port(), _port()
        ui = subprocess.Popen(
            [str(BIN / "mlcd"), "ui", "--port", str(ui_port)], cwd=project,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        mlflow = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
             "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            mlcd_url = f"http://127.0.0.1:{ui_port}"
            mlflow_url = f"http://127.0.0.1:{mlflow_port}"
            _wait(mlcd_url + "/static/ui.css", ui)
            _wait(mlflow_url + "/health", mlflow)
            experiment = json.loads(
                urllib.request.urlopen(
                    f"{mlflow_url}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=bench"
                ).read()
            )["experiment"]["experiment_id"]
            p0 = "0.0"  # a value of params.p0 that a share of the cloned runs have
            cases = {
                "first page": (
                    lambda: _get(mlcd_url + "/runs"),
                    lambda: _post(f"{mlflow_url}/ajax-api/2.0/mlflow/runs/search", {
                        "experiment_ids": [experiment], "max_results": 100,
                        "order_by": ["attributes.start_time DESC"]}),
                ),
                "filtered, sorted": (
                    lambda: _get(mlcd_url + "/runs?" + urllib.parse.urlencode({
                        "filter": f"metrics.m1 > 1.5 and params.p0 = '{p0}'",
                        "order": "metrics.m2 desc"})),
                    lambda: _post(f"{mlflow_url}/ajax-api/2.0/mlflow/runs/search", {
                        "experiment_ids": [experiment], "max_results": 100,
                        "filter": f"metrics.m1 > 1.5 and params.p0 = '{p0}'",
                        "order_by": ["metrics.m2 DESC"]}),
                ),
            }  # fmt: skip
            # Both tools must find the same runs for the comparison to mean anything.
            page = urllib.request.urlopen(mlcd_url + "/runs?" + urllib.parse.urlencode({
                "filter": f"metrics.m1 > 1.5 and params.p0 = '{p0}'"})).read().decode()
            found = json.loads(urllib.request.urlopen(urllib.request.Request(
                f"{mlflow_url}/ajax-api/2.0/mlflow/runs/search",
                data=json.dumps({"experiment_ids": [experiment], "max_results": 1000,
                                 "filter": f"metrics.m1 > 1.5 and params.p0 = '{p0}'"}).encode(),
                headers={"content-type": "application/json"})).read())["runs"]
            ours_rows = page.count('class="run-row"')
            print(f"filter matches: mlcd shows {ours_rows} rows on its first page, "
                  f"MLflow finds {len(found)} runs")
            if ours_rows == 0 or not found:
                raise SystemExit("the filter matched nothing on one side: the data differ")
            results: dict[str, Any] = {"filter_matches_mlflow": len(found)}
            for name, (ours, theirs) in cases.items():
                ours(), theirs()  # warm-up: caches, connection pools, imports
                a, b = [], []
                for _ in range(args.reps):
                    a.append(ours())
                    b.append(theirs())
                results[name] = {"mlcd_s": round(median(a), 4), "mlflow_s": round(median(b), 4),
                                 "ratio": round(median(b) / median(a), 1)}  # fmt: skip
                print(f"{name}: mlcd {median(a) * 1000:.0f} ms, MLflow search "
                      f"{median(b) * 1000:.0f} ms ({median(b) / median(a):.1f}x)")  # fmt: skip
            if args.browser:
                times = _browser(mlcd_url + "/runs", args.reps)
                results["browser_first_page_s"] = round(median(times), 3)
                print(f"browser, first page on screen: mlcd {median(times) * 1000:.0f} ms")
            results["mlcd_ui_rss_mib"] = round(_rss_mib(ui.pid), 1)
            print(f"mlcd ui resident memory: {results['mlcd_ui_rss_mib']} MiB")
        finally:
            ui.terminate()
            os.killpg(mlflow.pid, signal.SIGTERM)
            ui.wait(30)
            mlflow.wait(30)
    report("ui", runs=args.runs, reps=args.reps, **results)


if __name__ == "__main__":
    main()
