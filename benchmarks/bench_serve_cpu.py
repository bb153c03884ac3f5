"""Server CPU per single-row request for the churn example's model (a scikit-learn pipeline:
column transformer, then gradient boosting), as ``mlcd serve churn@champion`` runs it.

The figure a host sizes CPU by: a real ``mlcd serve`` process on 127.0.0.1, N sequential
single-row requests from the example's held-out rows (after 50 of warm-up), its CPU time
(user + system, from ``/proc/PID/stat``) divided by N. Every answer must be 200 and the served
labels and probabilities must equal the pipeline's own ``predict`` and ``predict_proba``.

    .venv/bin/python benchmarks/bench_serve_cpu.py [--project DIR] [--n 1000] [--rounds 3]

Without ``--project``, a folder is prepared with ``examples/demo.py --small --until 6`` (the
churn example trained, registered and promoted to champion). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, stop, wait_http

REPO = Path(__file__).resolve().parents[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _prepare(base: Path) -> Path:
    work = base / "work"
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--workdir", str(work), "--small",
         "--until", "6"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return work


def _round(project: Path, n: int) -> dict[str, Any]:
    import httpx
    import numpy as np
    import pandas as pd

    from mlcd.project import Project
    from mlcd.registry import load_model

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "churn@champion", "--port", str(port),
         "--log-level", "warning"],
        cwd=project, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/v2/health/ready", server, timeout=120)
        test = pd.read_parquet(project / "data" / "features" / "test.parquet")
        rows = test.drop(columns=["churned"], errors="ignore").head(200)
        records = rows.to_dict(orient="records")
        with httpx.Client(base_url=url, timeout=30) as client:
            for record in records[:50]:
                client.post("/v1/models/churn/predict", json=[record]).raise_for_status()
            start_cpu, start = _cpu_s(server.pid), time.perf_counter()
            answers = []
            for i in range(n):
                response = client.post("/v1/models/churn/predict", json=[records[i % len(records)]])
                response.raise_for_status()
                answers.append(response.json())
            cpu, wall = _cpu_s(server.pid) - start_cpu, time.perf_counter() - start
    finally:
        stop(server)
    with Project.open(project) as opened:
        model = load_model("churn@champion", store=opened.store, objects=opened.objects)
    raw = model.raw
    expected_labels = raw.predict(rows).tolist()
    expected_proba = raw.predict_proba(rows)
    for i, answer in enumerate(answers[: len(records)]):
        assert answer["predictions"] == [expected_labels[i]], (i, answer)
        assert np.array_equal(np.asarray(answer["probabilities"][0]), expected_proba[i]), i
    return {"cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a folder with churn@champion registered")
    parser.add_argument("--n", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlcd-bench-serve-cpu-") as base:
        project = args.project or _prepare(Path(base))
        rounds = [_round(project, args.n) for _ in range(args.rounds)]
    result = {
        "requests_per_round": args.n,
        "server_cpu_ms_per_request": [round(r["cpu_ms"], 2) for r in rounds],
        "median_server_cpu_ms": round(statistics.median(r["cpu_ms"] for r in rounds), 2),
        "median_wall_ms": round(statistics.median(r["wall_ms"] for r in rounds), 2),
        "answers": "equal to the pipeline's own predict and predict_proba",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
