"""``mlcd monitor`` over a prediction log on S3 (moto on 127.0.0.1): time and peak memory.

The log is generated straight with pyarrow (not through a server): ``--files`` Parquet files
of ``--rows / --files`` rows each (by default 40 files of 500,000 rows, what ``mlcd log
compact`` leaves for 20 days of two versions), registered in the project's store with their
``s3://`` URLs as the server registers them. Columns: the server's (request_id, ts, model,
version, status, error, latency_ms), 8 numeric features, one categorical, prediction, proba.
Then ``mlcd monitor NAME --since 30d --json`` runs in a subprocess; its wall time and peak
RSS (``wait4``) are measured. ``--local`` also runs it over a local copy of the same files.

    nice -n 5 .venv/bin/python benchmarks/bench_log_s3.py --rows 2000000
    nice -n 5 .venv/bin/python benchmarks/bench_log_s3.py --rows 20000000 --local --ranged

``--ranged`` runs the monitor a second time over the same S3 log with ranged reads only
(``MLCD_LOG_WHOLE_READ_MAX=0``): the requests and moto's CPU of each read path. The report
gives moto's requests by method, counted from its access log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report

DAY = 86400.0
FEATURES = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server on a free port; its access log (one line a request) goes to ``log``."""
    port = _free_port()
    binary = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def _table(n: int, seed: int, start: float, span: float, version: int):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    columns = {
        "request_id": pc.binary_join_element_wise(
            f"s{seed}-", pc.cast(pa.array(np.arange(n)), pa.string()), ""
        ),
        "ts": np.sort(start + rng.uniform(0, span, n)),
        "model": pa.array(["bench"] * n),
        "version": np.full(n, version, dtype=np.int64),
        "status": pa.array(np.where(rng.uniform(size=n) < 0.01, "rejected", "ok")),
        "error": pa.nulls(n, pa.string()),
        "latency_ms": rng.uniform(1, 5, n),
    }
    for i in range(FEATURES):
        columns[f"x{i}"] = rng.standard_normal(n) + (0.3 if version == 2 and i < 2 else 0.0)
    columns["city"] = pa.array(rng.choice(["paris", "lyon", "nice", "lille"], n))
    columns["prediction"] = (columns["x0"] > 0).astype(np.int64)
    columns["proba"] = 1 / (1 + np.exp(-columns["x0"]))
    return pa.table(columns)


def _init(parent: Path, name: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "init", name], cwd=parent, check=True,
        capture_output=True,
    )  # fmt: skip
    return parent / name


def _generate(s3_root: Path, local_root: Path | None, url: str, rows: int, files: int) -> float:
    import fsspec
    import pyarrow.parquet as pq

    from mlcd.store import Store
    from mlcd.store.predictions import add_segment

    stores = [Store(f"sqlite:///{s3_root / '.mlcd' / 'mlcd.db'}")]
    if local_root is not None:
        stores.append(Store(f"sqlite:///{local_root / '.mlcd' / 'mlcd.db'}"))
    now = time.time()
    per = rows // files
    started = time.perf_counter()
    for index in range(files):
        version = 1 + index % 2
        day_start = now - 20 * DAY + (index // 2) * (20 * DAY / (files / 2))
        table = _table(per, index, day_start, 20 * DAY / (files / 2) - 1, version)
        day = time.strftime("%Y-%m-%d", time.gmtime(day_start))
        name = f"model=bench/date={day}/daily-{day}-v{version}-{uuid.uuid4().hex[:16]}.parquet"
        ts = table.column("ts").to_numpy()
        targets = [f"{url}/{name}"]
        with fsspec.open(targets[0], "wb") as out:
            pq.write_table(table, out, compression="zstd", row_group_size=131_072)
        if local_root is not None:
            relative = f".mlcd/predictions/{name}"
            (local_root / relative).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, local_root / relative, compression="zstd", row_group_size=131_072)
            targets.append(relative)
        for store, path in zip(stores, targets, strict=False):
            store.transact(
                lambda conn, path=path, v=version, a=float(ts[0]), b=float(ts[-1]): add_segment(
                    conn, model="bench", version=v, path=path, rows=per, first_at=a, last_at=b,
                    kind="daily",
                )
            )  # fmt: skip
    for store in stores:
        store.dispose()
    return time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _requests(log: Path | None, start: int) -> dict[str, int]:
    """Requests moto logged after byte ``start`` of its access log, by method (GET, HEAD...)."""
    if log is None:
        return {}
    with open(log, "rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    counts: dict[str, int] = {}
    for method in re.findall(r'"([A-Z]+) /', text):
        counts[method] = counts.get(method, 0) + 1
    return counts


def _monitor(
    root: Path,
    server: int | None = None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "mlcd.cli.main", "monitor", "bench", "--reference",
            "ref.parquet", "--since", "30d", "--json"]  # fmt: skip
    served = _cpu_seconds(server) if server else 0.0
    logged = log.stat().st_size if log is not None else 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=root, stdout=out, stderr=err, env={**os.environ, **(env or {})}
        )
        _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"mlcd monitor failed: {err.read().decode()[-2000:]}")
        data = json.loads(out.read())
    return {
        "seconds": round(seconds, 2),
        "elapsed_s": round(float(data["elapsed_s"]), 2),
        "rows": int(data["window"]["rows"]),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "rows_per_s": round(int(data["window"]["rows"]) / seconds),
        "drifted": len(data["drift"]["drifted"]),
        # moto answers on the same cores: its CPU during the run competes with the monitor's
        **({"server_cpu_s": round(_cpu_seconds(server) - served, 1)} if server else {}),
        # every request the monitor sent to moto (a ranged GET costs moto a whole read)
        **({"requests": _requests(log, logged)} if log is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--local", action="store_true", help="also monitor a local copy")
    parser.add_argument(
        "--ranged", action="store_true",
        help="also monitor the S3 log with ranged reads only (MLCD_LOG_WHOLE_READ_MAX=0)",
    )  # fmt: skip
    args = parser.parse_args()
    access_log = Path(tempfile.mkstemp(prefix="mlcd-bench-moto-", suffix=".log")[1])
    moto, endpoint = _start_moto(access_log)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint,
    )  # fmt: skip
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="mlcd-bench")
        with tempfile.TemporaryDirectory(prefix="mlcd-bench-log-") as folder:
            parent = Path(folder)
            s3_root = _init(parent, "s3")
            local_root = _init(parent, "local") if args.local else None
            generated = _generate(
                s3_root, local_root, "s3://mlcd-bench/predictions", args.rows, args.files
            )
            reference = _table(200_000, 999, time.time() - 40 * DAY, DAY, 1).drop_columns(
                ["request_id", "ts", "model", "version", "status", "error", "latency_ms"]
            )
            import pyarrow.parquet as pq

            for root in [s3_root, *([local_root] if local_root else [])]:
                pq.write_table(reference, root / "ref.parquet")
            s3 = _monitor(s3_root, moto.pid, access_log)
            report("log_s3.monitor", where="s3", files=args.files, generate_s=round(generated, 1),
                   **s3)  # fmt: skip
            if args.ranged:
                ranged = _monitor(s3_root, moto.pid, access_log, {"MLCD_LOG_WHOLE_READ_MAX": "0"})
                report("log_s3.monitor", where="s3-ranged", files=args.files, **ranged)
            if local_root is not None:
                local = _monitor(local_root)
                report("log_s3.monitor", where="local", files=args.files, **local)
    finally:
        moto.terminate()
        moto.wait(30)
        access_log.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
