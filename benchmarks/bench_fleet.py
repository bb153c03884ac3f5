"""A fleet of `mlcd serve` replicas on a shared PostgreSQL + S3, against `mlcd serve` alone.

What it measures is the cost of being in a fleet: the replicas resolve the alias in
PostgreSQL, fetch packages from S3 (a moto server on 127.0.0.1), write heartbeats every
``fleet_interval_s`` and exchange canary counters, where `mlcd serve` alone reads its
embedded SQLite store. Every configuration answers the same single-row requests of one
LogisticRegression (breast-cancer data, 30 floats) with its prediction log on, under `wrk`
with 16 connections in all for ``--seconds``; with several replicas the connections are
split over one `wrk` per replica started together (a load balancer's round robin), and the
requests/s are summed. Configurations, in alternating rounds:

* ``alone-1w`` / ``alone-2w``: `mlcd serve --workers 1|2` on the embedded store;
* ``fleet-1`` / ``fleet-2`` / ``fleet-3``: 1, 2, 3 replicas of one worker each, each in its
  own folder, on the shared PostgreSQL + S3;
* ``ray-1`` / ``ray-2`` (with ``--ray``): `mlcd serve --engine ray --replicas 1|2` on a local
  `ray start --head` node.

This machine has 2 cores that `wrk`, the replicas, PostgreSQL and moto share: past 2 busy
processes, more replicas cannot add throughput here; the point is the overhead per request
of the shared store at equal worker counts (``fleet-1`` vs ``alone-1w``, ``fleet-2`` vs
``alone-2w``), aim under 5 %.

    .venv/bin/python benchmarks/bench_fleet.py [--rounds 2] [--seconds 10] [--ray]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import data, free_port, stop, wait_http, wrk

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
CONNECTIONS = 16


@contextmanager
def shared_services() -> Iterator[tuple[str, str, dict[str, str]]]:
    """A fresh PostgreSQL database and a moto S3 bucket: (store URL, artifacts URL, env)."""
    import boto3
    import psycopg
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="fleet-bench")
    name = f"mlcd_bench_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}", "s3://fleet-bench/objects", env
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        moto.stop()


def make_project(root: Path, store: str | None, artifacts: str | None) -> None:
    subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "init", str(root)], check=True, capture_output=True
    )
    lines = ["", "serve:", "  poll_interval_s: 5", "  fleet_interval_s: 2"]
    if store:
        lines += [f"store: {store}", f"artifacts: {artifacts}"]
    with open(root / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def register(root: Path, X: Any, y: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model, set_alias

    model = LogisticRegression(max_iter=5000).fit(X, y)
    with Project.open(root) as project:
        save_model(model, root / "pkg", sample_input=X.head(100))
        version = register_from_path(project.store, project.objects, "bc", root / "pkg").version
        set_alias(project.store, "bc", "champion", version.version)


def start_serve(
    root: Path, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> tuple[Any, str]:
    port = port or free_port()
    log = root / f"serve-{port}.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcd.cli.main", "serve", "bc", "--port", str(port),
             "--log-level", "warning", *extra],
            cwd=root, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/v2/health/ready", process, timeout=600)
    except RuntimeError:
        sys.stderr.write(log.read_text(encoding="utf-8"))
        raise
    # With several workers the first ready answer may come from one while another still
    # loads (and answers 503): wait until 40 readiness probes in a row say ready.
    import httpx

    streak, deadline = 0, time.monotonic() + 600
    while streak < 40 and time.monotonic() < deadline:
        ok = httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        streak = streak + 1 if ok else 0
        time.sleep(0 if ok else 0.2)
    return process, f"{base}/v1/models/bc/predict"


def load(urls: list[str], body: Any, seconds: int, work: Path) -> dict[str, Any]:
    """One wrk per URL at once, the 16 connections split between them; summed."""
    from concurrent.futures import ThreadPoolExecutor

    share = max(1, CONNECTIONS // len(urls))
    folders = []
    for i in range(len(urls)):
        folder = work / f"wrk-{i}"
        folder.mkdir(exist_ok=True)
        folders.append(folder)
    with ThreadPoolExecutor(len(urls)) as pool:
        results = list(
            pool.map(
                lambda a: wrk(a[0], body, share, seconds, a[1]), zip(urls, folders, strict=True)
            )
        )
    return {
        "rps": sum(r["rps"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "non_2xx": sum(r["non_2xx"] for r in results),
        "socket_errors": ";".join(r["socket_errors"] for r in results if r["socket_errors"]),
    }


@contextmanager
def ray_head(work: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    folder = work / "ray-head"
    folder.mkdir()
    ray = str(Path(sys.executable).parent / "ray")
    # auth off: a local ray.init() elsewhere leaves ~/.ray/auth_token, which would turn it on
    # for the head but not for the drivers given an address
    ray_env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
        cwd=folder, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, **ray_env},
    )  # fmt: skip
    time.sleep(10)
    try:
        yield {"RAY_ADDRESS": f"127.0.0.1:{port}", "MLCD_RAY_PROXY": "HeadOnly", **ray_env}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--ray", action="store_true", help="also Ray Serve with 1 and 2 replicas")
    parser.add_argument("--only", default="", help="comma-separated configurations to run")
    args = parser.parse_args()
    X, y = data()
    body = [X.iloc[0].to_dict()]
    results: dict[str, list[dict[str, Any]]] = {}
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-fleet-"))
    try:
        with shared_services() as (store, artifacts, env):
            alone = work / "alone"
            make_project(alone, None, None)
            register(alone, X, y)
            publisher = work / "publisher"
            make_project(publisher, store, artifacts)
            register(publisher, X, y)
            replicas = []
            for i in range(3):
                folder = work / f"replica-{i}"
                make_project(folder, store, artifacts)
                replicas.append(folder)

            def measure(
                name: str,
                starts: list[tuple[Path, tuple[str, ...], dict[str, str]]],
                port: int | None = None,
            ) -> None:
                started = [start_serve(root, *extra, env=e, port=port) for root, extra, e in starts]
                try:
                    urls = [url for _p, url in started]
                    load(urls, body, 2, work)  # warm-up
                    result = load(urls, body, args.seconds, work)
                finally:
                    for process, _url in started:
                        stop(process)
                result["config"] = name
                print(json.dumps(result), flush=True)
                results.setdefault(name, []).append(result)

            configs: list[tuple[str, list[tuple[Path, tuple[str, ...], dict[str, str]]]]] = [
                ("alone-1w", [(alone, ("--workers", "1"), {})]),
                ("alone-2w", [(alone, ("--workers", "2"), {})]),
                ("fleet-1", [(replicas[0], ("--workers", "1"), env)]),
                ("fleet-2", [(r, ("--workers", "1"), env) for r in replicas[:2]]),
                ("fleet-3", [(r, ("--workers", "1"), env) for r in replicas]),
            ]
            only = set(filter(None, args.only.split(",")))
            configs = [c for c in configs if not only or c[0] in only]
            for _round in range(args.rounds):
                for name, starts in configs:
                    measure(name, starts)
            if args.ray:
                with ray_head(work) as ray_env:
                    # Serve's HTTP port is fixed when Serve first starts on a cluster: one port
                    port = free_port()
                    for _round in range(args.rounds):
                        for n in (1, 2):
                            engine = ("--engine", "ray", "--replicas", str(n))
                            measure(f"ray-{n}", [(publisher, engine, {**env, **ray_env})], port)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print("\n| configuration | requests/s (median) | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|")
    for name in results:
        errors = sum(r["non_2xx"] for r in results[name])
        print(
            f"| {name} | {med(name, 'rps'):,.0f} | {med(name, 'p50_ms'):.2f} | "
            f"{med(name, 'p99_ms'):.1f} | {errors} |"
        )
    for fleet, alone_name in (("fleet-1", "alone-1w"), ("fleet-2", "alone-2w")):
        if fleet not in results or alone_name not in results:
            continue
        overhead = 1 - med(fleet, "rps") / med(alone_name, "rps")
        print(f"{fleet} against {alone_name}: {overhead:+.1%} throughput lost to the shared store")


if __name__ == "__main__":
    main()
