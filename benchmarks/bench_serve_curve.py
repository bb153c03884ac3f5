"""Serving latency/throughput curve: `mlcd serve` against MLServer at constant request rates.

An open-loop client (asyncio, raw HTTP/1.1 keep-alive, no client library) sends single-row
requests on a fixed schedule (request i at start + i / rate) and measures each latency from
its *scheduled* time, so a stalled server cannot hide its tail by slowing the client down
(no coordinated omission). A request finds an idle connection or opens a new one (up to
``--max-conns``); if all are busy it waits, and the wait counts in its latency.

Both servers answer the same body on the Open Inference Protocol v2 (one [1, 30] FP64 tensor,
row 0 of scikit-learn's breast-cancer data) with the same LogisticRegression: `mlcd serve
--workers 2` (prediction log ON, every row written to Parquet and registered) and MLServer
1.7.1 + mlserver-sklearn with `parallel_workers: 0` (its fastest setting on this machine,
in its own venv under /work/bench-venvs, see bench_serve.py). Rounds alternate the servers;
within a round each server runs every rate step, a fresh server per round.

Each step also reports the server's CPU time per answered request (all its processes, from
/proc): on a shared machine that is steadier than the latencies.

Checks: the predictions of both servers agree on the first ``--check-rows`` rows; mlcd's log
holds exactly one row per request it answered with 200 (its own ``/metrics`` count: warm-up,
checks and requests the client gave up on included).

The client runs in its own process, pinned to one core with ``taskset`` (``--client-cpu``),
so on a 2-core machine the servers share the cores with it: the figures are for a server
with about one free core plus a share of the other.

    .venv/bin/python benchmarks/bench_serve_curve.py [--rates 500,1000,2000,3000,4000]
        [--seconds 15] [--rounds 2] [--only mlcd,mlserver] [--quick]
    .venv/bin/python benchmarks/bench_serve_curve.py client URL BODYFILE RATE SECONDS
    [PYTHONPATH=SRC] .venv/bin/python benchmarks/bench_serve_curve.py writer

``writer`` measures the prediction log in process (of the installed mlcd, or of the source tree
on ``PYTHONPATH``): thread CPU per row to build a segment's Arrow table from 4,000 single-row
entries like the server's, Parquet encoding, and how many GC-tracked objects 5,000 queued
entries leave behind (what a full collection must walk).

Prints one JSON line per measurement, then the table (medians over rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: A step passes when its p99 is under this and it had no errors.
P99_LIMIT_MS = 100.0


# ---------------------------------------------------------------------- the open-loop client
class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


async def _open_loop(
    url: str, body: bytes, rate: float, seconds: float, max_conns: int, grace_s: float
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    idle: list[_Conn] = []
    waiters: list[asyncio.Future[_Conn]] = []
    opened = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    first_body: list[bytes] = []
    done_at = [0.0]

    async def acquire() -> tuple[_Conn, bool]:
        """A connection, and whether it was used before (keep-alive)."""
        nonlocal opened
        while idle:
            conn = idle.pop()
            if not (conn.reader.at_eof() or conn.writer.is_closing()):
                return conn, True
            conn.writer.close()  # the server closed it while idle (its keep-alive timeout)
            opened -= 1
        if opened < max_conns:
            opened += 1
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                opened -= 1
                raise
            return _Conn(reader, writer), False
        future: asyncio.Future[_Conn] = loop.create_future()
        waiters.append(future)
        return await future, True

    def release(conn: _Conn) -> None:
        while waiters:
            future = waiters.pop(0)
            if not future.done():
                future.set_result(conn)
                return
        idle.append(conn)

    async def exchange(conn: _Conn) -> tuple[int, bytes]:
        conn.writer.write(request)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await conn.reader.readexactly(length)

    async def one(scheduled: float) -> None:
        nonlocal opened
        conn = None
        try:
            for attempt in (1, 2):
                conn, reused = await acquire()
                try:
                    status, answer = await exchange(conn)
                    break
                except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                    # A kept-alive connection the server closed just as the request went out
                    # (nothing of an answer came back): what any HTTP client retries.
                    conn.writer.close()
                    opened -= 1
                    conn = None
                    empty = not getattr(exc, "partial", b"")
                    if not (reused and empty and attempt == 1):
                        raise
            finished = clock()
            latencies.append(finished - scheduled)
            done_at[0] = max(done_at[0], finished)
            statuses[status] = statuses.get(status, 0) + 1
            if not first_body:
                first_body.append(answer)
            assert conn is not None
            release(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            key = type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
            if conn is not None:
                conn.writer.close()
                opened -= 1

    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    start = clock() + 0.05
    i = 0
    late = 0.0
    while i < total:
        now = clock()
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        late = max(late, now - due)
        task = loop.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    sent_until = clock()
    if tasks:
        _done, pending = await asyncio.wait(set(tasks), timeout=grace_s)
        for task in pending:
            task.cancel()
        errors["timeout"] = errors.get("timeout", 0) + len(pending)
    for conn in idle:
        conn.writer.close()
    ok = statuses.get(200, 0)
    answered = sum(statuses.values())
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    span = max(done_at[0], sent_until) - start
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": total,
        "answered": answered,
        "ok": ok,
        "non_200": answered - ok,
        "errors": sum(errors.values()) + answered - ok,
        "error_kinds": errors,
        "achieved_rps": round(ok / span, 1) if span > 0 else 0.0,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": latencies[-1] * 1000 if latencies else None,
        "connections": opened,
        "client_max_late_ms": round(late * 1000, 2),
        "first_answer": first_body[0].decode(errors="replace")[:300] if first_body else None,
    }


def client_main(argv: list[str]) -> None:
    """``client URL BODYFILE RATE SECONDS [MAX_CONNS]``: one open-loop run, one JSON line."""
    url, body_file, rate, seconds = argv[0], argv[1], float(argv[2]), float(argv[3])
    max_conns = int(argv[4]) if len(argv) > 4 else 256
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    body = Path(body_file).read_bytes()
    result = runner(_open_loop(url, body, rate, seconds, max_conns, grace_s=10.0))
    print(json.dumps(result), flush=True)


def run_client(
    url: str, body_file: Path, rate: float, seconds: float, cpu: str | None
) -> dict[str, Any]:
    """The client in its own process (pinned to ``cpu`` when given)."""
    argv = [sys.executable, __file__, "client", url, str(body_file), str(rate), str(seconds)]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", cpu, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------- servers and checks
def _bench_serve() -> Any:
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_serve

    return bench_serve


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process below it (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(name))
        times[int(name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(parents.get(current, []))
    return total


def oip_body(row: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64",
                        "data": row}]}  # fmt: skip


def predictions(url: str, X: Any, rows: int) -> tuple[list[Any], int]:
    """The server's ``predict`` output for each of the first ``rows`` rows (one request each),
    and how many requests it answered with 200 (readiness probes included)."""
    import httpx

    out = []
    with httpx.Client(timeout=10) as client:
        # Every worker ready: a worker still loading answers 503 (readiness saw another one).
        deadline, streak, answered = time.monotonic() + 120, 0, 0
        while streak < 20 and time.monotonic() < deadline:
            fresh = httpx.Client(timeout=10)  # a new connection may land on another worker
            try:
                ok = fresh.post(url, json=oip_body(X.iloc[0].tolist())).status_code == 200
            finally:
                fresh.close()
            streak = streak + 1 if ok else 0
            answered += ok
            if not ok:
                time.sleep(0.2)
        for i in range(rows):
            answer = client.post(url, json=oip_body(X.iloc[i].tolist()))
            answer.raise_for_status()
            outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
            out.append(outputs["predict"][0])
    return out, answered + rows


def start_mlcd(
    work: Path, X: Any, y: Any, workers: int, label: str, src: str | None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`mlcd serve bc --workers N` (log on) from the installed package, or from the source
    tree ``src`` (``PYTHONPATH``, to compare commits); its project is made by the same code."""
    bench = _bench_serve()
    env = {**os.environ, "PYTHONPATH": src} if src else dict(os.environ)
    root = work / f"project-{label}"
    if not (root / "mlcd.yaml").exists():
        frame = work / "xy.parquet"
        X.assign(target=y).to_parquet(frame)
        code = (
            "import subprocess, sys, pandas as pd\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from mlcd.project import Project\n"
            "from mlcd.registry import register_from_path, save_model, set_alias\n"
            f"root = {str(root)!r}\n"
            "subprocess.run([sys.executable, '-m', 'mlcd.cli.main', 'init', root], check=True,"
            " capture_output=True)\n"
            f"d = pd.read_parquet({str(frame)!r}); X = d.drop(columns='target')\n"
            "m = LogisticRegression(max_iter=5000).fit(X, d['target'])\n"
            "with Project.open(root) as p:\n"
            "    save_model(m, root + '/pkg', sample_input=X.head(100))\n"
            "    v = register_from_path(p.store, p.objects, 'bc', root + '/pkg').version\n"
            "    set_alias(p.store, 'bc', 'champion', v.version)\n"
        )
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    port = bench.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "bc", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning"],
        cwd=root, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    bench.wait_http(f"{base}/v2/health/ready", process)
    return process, f"{base}/v2/models/bc/infer", root


def served_ok(url: str) -> int:
    """Requests the server answered with 200, from its own ``/metrics`` (all workers), once
    nothing is in flight any more (requests the client gave up on may still be queued)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    base = url.split("/v2/", 1)[0]
    deadline = time.monotonic() + 60
    while True:
        total, in_flight = 0.0, 0.0
        text = httpx.get(f"{base}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "mlcd_serve_in_flight_requests":
                    in_flight += sample.value
                elif sample.name == "mlcd_serve_requests_total":
                    total += sample.value if sample.labels.get("status") == "200" else 0.0
        if in_flight <= 0 or time.monotonic() > deadline:
            return int(total)
        time.sleep(0.5)


def logged_rows(root: Path) -> int:
    from mlcd.project import Project
    from mlcd.store import predictions as segments

    with Project.open(root) as project, project.store.read() as conn:
        return int(segments.logged_rows(conn, "bc"))


def writer_main() -> None:
    """``writer``: the prediction log's own costs, in this process (one JSON line)."""
    import gc

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import mlcd
    from mlcd.serve.predlog import LogEntry, PredictionLog, to_table

    names = [f"f{j}" for j in range(30)]
    rng = np.random.default_rng(0)

    def entry(i: int) -> LogEntry:  # what PredictionService._log hands over for one row
        matrix = rng.random((1, 30))
        return LogEntry(
            "bc", 1, time.time(), 0.5, "ok", [f"{i:x}"],
            {n: matrix[:, j] for j, n in enumerate(names)}, np.array([1]), np.array([0.7]),
            matrix=matrix,
        )  # fmt: skip

    entries = [entry(i) for i in range(4000)]
    to_table(entries)  # imports
    build, encode = [], []
    for _ in range(5):
        started = time.thread_time()
        table = to_table(entries)
        build.append(time.thread_time() - started)
        started = time.thread_time()
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        encode.append(time.thread_time() - started)
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-writer-"))
    try:
        log = PredictionLog(None, work, work / "p", batch_rows=10**9, queue_size=10**9)
        for i in range(200):
            log.log(entry(i))
        gc.collect()
        before = len(gc.get_objects())
        for i in range(5000):
            log.log(entry(i))
        gc.collect()
        grown = len(gc.get_objects()) - before
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "bench": "serve_curve", "what": "writer", "mlcd": str(Path(mlcd.__file__).parent),
        "table_us_per_row": round(statistics.median(build) / 4000 * 1e6, 2),
        "parquet_us_per_row": round(statistics.median(encode) / 4000 * 1e6, 2),
        "segment_bytes": sink.tell(),
        "gc_tracked_objects_per_queued_entry": round(max(grown, 0) / 5000, 2),
    }), flush=True)  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        writer_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,3000,4000")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="mlcd,mlserver")
    parser.add_argument("--workers", type=int, default=2, help="mlcd serve --workers")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU list ('' for none)")
    parser.add_argument("--check-rows", type=int, default=50)
    parser.add_argument("--no-saturate", action="store_true",
                        help="run every rate even after a server failed one")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="500,1000 for 5 s, one round")
    parser.add_argument(
        "--mlcd-src",
        default="",
        help="LABEL=SRC,...: also run mlcd from these source trees (e.g. an older commit's "
        "`git archive REV src`), as servers named mlcd@LABEL (add them to --only)",
    )
    args = parser.parse_args()
    rates = [float(r) for r in ("500,1000" if args.quick else args.rates).split(",")]
    seconds = 5.0 if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    names = args.only.split(",")
    sources: dict[str, str | None] = {"mlcd": None}
    for item in filter(None, args.mlcd_src.split(",")):
        label, _sep, src = item.partition("=")
        sources[f"mlcd@{label}"] = str(Path(src).resolve())
    cpu = args.client_cpu or None
    bench = _bench_serve()
    X, y = bench.data()
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-curve-"))
    body_file = work / "body.json"
    body_file.write_text(json.dumps(oip_body(X.iloc[0].tolist())))
    print(json.dumps({"bench": "serve_curve", "what": "setup", "date": time.strftime(
        "%Y-%m-%d %H:%M UTC", time.gmtime()), "rates": rates, "seconds": seconds,
        "rounds": rounds, "client_cpu": cpu, "loadavg": os.getloadavg()}), flush=True)  # fmt: skip
    results: dict[str, dict[float, list[dict[str, Any]]]] = {n: {} for n in names}
    answers: dict[str, list[Any]] = {}
    log_checks: list[dict[str, Any]] = []
    try:
        for round_ in range(rounds):
            for name in names:
                if name in sources:
                    label = name.replace("@", "-")
                    process, url, root = start_mlcd(work, X, y, args.workers, label, sources[name])
                    before = logged_rows(root)
                else:
                    process, url, _body = bench.start_mlserver(work, X, y)
                sent = 0
                try:
                    answers[name], checked = predictions(url, X, args.check_rows)
                    sent += checked
                    warm = run_client(url, body_file, 500, 2, cpu)
                    sent += warm["ok"]
                    for rate in rates:
                        cpu_before = tree_cpu_s(process.pid)
                        row = run_client(url, body_file, rate, seconds, cpu)
                        row["server_cpu_us"] = round(
                            (tree_cpu_s(process.pid) - cpu_before) / max(1, row["ok"]) * 1e6, 1
                        )
                        sent += row["ok"]
                        row.update(bench="serve_curve", server=name, round=round_)
                        row.pop("first_answer", None)
                        print(json.dumps(row), flush=True)
                        results[name].setdefault(rate, []).append(row)
                        failed = row["errors"] or (row["p99_ms"] or 1e9) > P99_LIMIT_MS
                        if failed and not args.no_saturate:
                            break  # past saturation: higher rates only queue
                    if name in sources:
                        served = served_ok(url)
                finally:
                    bench.stop(process)  # the log is flushed when the server stops
                if name in sources:
                    logged = logged_rows(root) - before
                    # "served" is the server's own count; "received" the 200s the client got
                    # (fewer when it gave up on requests the server still answered).
                    check = {"bench": "serve_curve", "what": "log", "server": name,
                             "round": round_, "received": sent, "served": served,
                             "logged": logged}  # fmt: skip
                    log_checks.append(check)
                    print(json.dumps(check), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = len({json.dumps(a) for a in answers.values()}) == 1
    print(f"\npredictions on the first {args.check_rows} rows identical across servers: {same}")
    for check in log_checks:
        print(f"{check['server']} log, round {check['round']}: served {check['served']} "
              f"(per its /metrics; the client received {check['received']}), "
              f"logged {check['logged']}")  # fmt: skip
    print(f"\n{'server':9} {'rate':>6} {'achieved':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'p99.9 ms':>9} {'errors':>7} {'rounds':>6} {'CPU µs/req':>10}")  # fmt: skip
    for name in names:
        saturation = 0.0
        for rate in rates:
            runs = results[name].get(rate, [])
            if not runs:
                continue

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(r[key] if r[key] is not None else 1e9 for r in runs)

            errors = sum(r["errors"] for r in runs)
            print(f"{name:9} {rate:6.0f} {med('achieved_rps'):9.0f} {med('p50_ms'):8.2f} "
                  f"{med('p99_ms'):8.2f} {med('p999_ms'):9.2f} {errors:7d} {len(runs):6d} "
                  f"{med('server_cpu_us'):10.0f}")  # fmt: skip
            if (
                len(runs) == rounds
                and not errors
                and all((r["p99_ms"] or 1e9) <= P99_LIMIT_MS for r in runs)
            ):
                saturation = rate
        print(f"{name}: highest rate with p99 <= {P99_LIMIT_MS:g} ms and no errors in every "
              f"round: {saturation:.0f} requests/s")  # fmt: skip


if __name__ == "__main__":
    main()
