"""Model serving: `mlcd serve` against MLServer and `mlflow models serve`, same model, same load.

One LogisticRegression on scikit-learn's breast-cancer data (30 float features). Each server
answers single-row requests from `wrk` on 127.0.0.1 with 16 connections for 20 s (the load
the anchors' own docs use), and with 1 connection for the low-load overhead; the floor is the
in-process `predict_proba` time of one row. mlcd and MLServer get the same body on the same
protocol (OIP v2, one [1, 30] FP64 tensor); each server's predictions for the first 20 rows
are checked against the model's. wrk is closed-loop (a slow answer delays the next request);
bench_serve_curve.py measures the tail at fixed rates instead. Each anchor runs from its own venv under
/work/bench-venvs (created when missing): MLServer 1.7 (`mlserver` + `mlserver-sklearn`, its
Open Inference Protocol endpoint, `parallel_workers: 0`) and MLflow 3 (`mlflow models serve
--env-manager local`). mlcd runs with its prediction log ON, one worker per core.

    .venv/bin/python benchmarks/bench_serve.py [--quick] [--rounds N] [--only mlcd,mlserver]

Prints one JSON line per measurement, then a table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VENVS = Path(os.environ.get("MLCD_BENCH_VENVS", "/work/bench-venvs"))
ANCHORS = {
    "mlserver": [
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "uvloop<0.22",
        "scikit-learn",
        "joblib",
    ],
    "mlflow": ["mlflow>=3", "scikit-learn"],
}
CONNECTIONS = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv(name: str) -> Path:
    """The anchor's venv, created (under a lock shared with other benchmarks) when missing."""
    folder = VENVS / name
    binary = folder / "bin" / ("mlserver" if name == "mlserver" else "mlflow")
    if binary.exists():
        return folder
    VENVS.mkdir(parents=True, exist_ok=True)
    script = (
        f"test -x {binary} || ({sys.executable} -m venv {folder} && "
        f"{folder}/bin/pip install -q " + " ".join(f"'{p}'" for p in ANCHORS[name]) + ")"
    )
    subprocess.run(["flock", str(VENVS / ".lock"), "bash", "-c", script], check=True)
    return folder


def data() -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wrk(
    url: str, body: dict[str, Any], connections: int, seconds: int, work: Path
) -> dict[str, Any]:
    """Run wrk with a POST body; requests/s, p50/p99 in ms, errors."""
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


# ---------------------------------------------------------------------- the servers
def start_mlcd(
    work: Path, X: Any, y: Any, workers: int
) -> tuple[subprocess.Popen[bytes], str, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression

    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model, set_alias

    root = work / "mlcd"
    if not (root / "mlcd.yaml").exists():
        subprocess.run(
            [sys.executable, "-m", "mlcd.cli.main", "init", str(root)],
            check=True,
            capture_output=True,
        )
        model = LogisticRegression(max_iter=5000).fit(X, y)
        with Project.open(root) as project:
            save_model(model, root / "pkg", sample_input=X.head(100))
            version = register_from_path(project.store, project.objects, "bc", root / "pkg").version
            set_alias(project.store, "bc", "champion", version.version)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "bc", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning"],
        cwd=root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/v2/health/ready", process)
    # The same Open Inference Protocol body as MLServer's: like with like.
    body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                        "data": X.iloc[0].tolist()}]}  # fmt: skip
    return process, f"{base}/v2/models/bc/infer", body


def start_mlserver(
    work: Path, X: Any, y: Any
) -> tuple[subprocess.Popen[bytes], str, dict[str, Any]]:
    folder = venv("mlserver")
    models = work / "mlserver"
    model_dir = models / "bc"
    if not model_dir.exists():
        model_dir.mkdir(parents=True)
        # Fitted on a plain array in MLServer's own environment: it scores numpy tensors, so a
        # DataFrame-fitted model would warn about feature names on every request.
        np_file = work / "xy.npz"
        import numpy as np

        np.savez(np_file, X=X.to_numpy(), y=y.to_numpy())
        code = (
            "import numpy as np, joblib\nfrom sklearn.linear_model import LogisticRegression\n"
            f"d = np.load({str(np_file)!r})\n"
            "m = LogisticRegression(max_iter=5000).fit(d['X'], d['y'])\n"
            f"joblib.dump(m, {str(model_dir / 'model.joblib')!r})\n"
        )
        subprocess.run([str(folder / "bin" / "python"), "-c", code], check=True)
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": "bc", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }))  # fmt: skip
    port, grpc, metrics = free_port(), free_port(), free_port()
    (models / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc, "metrics_port": metrics, "parallel_workers": 0,
        "debug": False,
    }))  # fmt: skip
    process = subprocess.Popen(
        [str(folder / "bin" / "mlserver"), "start", str(models)],
        cwd=models, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/v2/models/bc/ready", process)
    body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                        "data": X.iloc[0].tolist()}]}  # fmt: skip
    return process, f"{base}/v2/models/bc/infer", body


def start_mlflow(work: Path, X: Any, y: Any) -> tuple[subprocess.Popen[bytes], str, dict[str, Any]]:
    folder = venv("mlflow")
    model_dir = work / "mlflow-model"
    if not model_dir.exists():
        frame = work / "x.parquet"
        X.assign(target=y).to_parquet(frame)
        code = (
            "import pandas as pd, mlflow.sklearn\nfrom sklearn.linear_model import LogisticRegression\n"
            f"d = pd.read_parquet({str(frame)!r}); X = d.drop(columns='target')\n"
            "m = LogisticRegression(max_iter=5000).fit(X, d['target'])\n"
            f"mlflow.sklearn.save_model(m, {str(model_dir)!r}, input_example=X.head(3))\n"
        )
        subprocess.run(
            [str(folder / "bin" / "python"), "-c", code], check=True, capture_output=True
        )
    port = free_port()
    env = {**os.environ, "PATH": f"{folder / 'bin'}:{os.environ['PATH']}"}
    process = subprocess.Popen(
        [str(folder / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "-p", str(port),
         "-h", "127.0.0.1", "--env-manager", "local"],
        cwd=work, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ping", process)
    body = {"dataframe_split": {"columns": list(X.columns), "data": [X.iloc[0].tolist()]}}
    return process, f"{base}/invocations", body


def check_answers(url: str, X: Any, y: Any, rows: int = 20) -> None:
    """The server's OIP ``predict`` output for the first rows equals the model's."""
    import httpx
    from sklearn.linear_model import LogisticRegression

    expected = LogisticRegression(max_iter=5000).fit(X.to_numpy(), y).predict(X.to_numpy()[:rows])
    for i in range(rows):
        body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                            "data": X.iloc[i].tolist()}]}  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # a second worker may still be loading (503)
            answer = httpx.post(url, json=body, timeout=10)
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        answer.raise_for_status()
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        if outputs["predict"][0] != int(expected[i]):
            raise RuntimeError(
                f"{url}: row {i} answered {outputs['predict']}, expected {expected[i]}"
            )


def floor(X: Any, y: Any) -> dict[str, float]:
    """In-process time of one row: the model alone, and mlcd's validation + model path."""
    import timeit

    from sklearn.linear_model import LogisticRegression

    from mlcd.registry.signature import Signature, infer_inputs, infer_output
    from mlcd.serve.validation import InputPlan

    model = LogisticRegression(max_iter=5000).fit(X, y)
    row = X.iloc[[0]]
    plan = InputPlan(Signature(infer_inputs(X.head(100)), infer_output(None, [0, 1], True)))
    record = [X.iloc[0].to_dict()]

    def mlcd_path() -> None:  # the server's own work minus HTTP: parse, check, score
        model.predict_proba(plan.parse([dict(r) for r in record]).matrix)

    def median_us(fn: Callable[[], Any]) -> float:
        runs = [timeit.timeit(fn, number=200) / 200 for _ in range(7)]
        return statistics.median(runs) * 1e6

    import warnings

    array = row.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the feature-name warning of a matrix input
        array_us = median_us(lambda: model.predict_proba(array))
        in_process_us = median_us(mlcd_path)
    return {
        "predict_us": median_us(lambda: model.predict(row)),
        "predict_proba_us": median_us(lambda: model.predict_proba(row)),
        "predict_proba_array_us": array_us,
        "mlcd_in_process_us": in_process_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s runs, one round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--only", default="mlcd,mlserver,mlflow")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    seconds = 5 if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    names = args.only.split(",")
    X, y = data()
    base = floor(X, y)
    print(json.dumps({"bench": "serve", "what": "floor", **base}), flush=True)
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-serve-"))
    starters: dict[str, Callable[[], tuple[subprocess.Popen[bytes], str, Any]]] = {
        "mlcd": lambda: start_mlcd(work, X, y, args.workers),
        "mlserver": lambda: start_mlserver(work, X, y),
        "mlflow": lambda: start_mlflow(work, X, y),
    }
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for round_ in range(rounds):
            for name in names:  # alternate the servers in every round
                process, url, body = starters[name]()
                try:
                    if name in ("mlcd", "mlserver"):
                        check_answers(url, X, y)
                    wrk(url, body, CONNECTIONS, 2, work)  # warm-up
                    loaded = wrk(url, body, CONNECTIONS, seconds, work)
                    idle = wrk(url, body, 1, max(3, seconds // 2), work)
                finally:
                    stop(process)
                row = {
                    "bench": "serve", "server": name, "round": round_, "connections": CONNECTIONS,
                    "seconds": seconds, **loaded, "low_load_p50_ms": idle["p50_ms"],
                    "low_load_rps": idle["rps"],
                }  # fmt: skip
                results[name].append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(f"\nfloor: predict {base['predict_us']:.0f} µs, predict_proba "
          f"{base['predict_proba_us']:.0f} µs (DataFrame row), "
          f"{base['predict_proba_array_us']:.0f} µs (numpy row)")  # fmt: skip
    print(
        f"{'server':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'1-conn p50 ms':>14} {'errors':>7}"
    )
    for name in names:
        errors = sum(r["non_2xx"] for r in results[name])
        print(f"{name:10} {med(name, 'rps'):8.0f} {med(name, 'p50_ms'):8.2f} {med(name, 'p99_ms'):8.2f} "
              f"{med(name, 'low_load_p50_ms'):14.2f} {errors:7d}")  # fmt: skip
    if "mlcd" in results and "mlserver" in results:
        ratio = med("mlcd", "rps") / med("mlserver", "rps")
        print(f"mlcd / MLServer throughput: {ratio:.2f}x")
    if "mlcd" in results:
        # The stricter floor: the numpy row, which is what the server scores.
        overhead = med("mlcd", "low_load_p50_ms") - base["predict_proba_array_us"] / 1000
        print(f"mlcd overhead over the floor at low load (1-connection p50 - numpy "
              f"predict_proba): {overhead:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
