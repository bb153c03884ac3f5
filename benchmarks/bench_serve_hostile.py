"""Hostile traffic against `mlcd serve` (one worker): load shedding and slow clients.

1. Burst: N concurrent requests of R rows each (raw sockets, so the client is not the
   bottleneck), with a readiness probe every 0.5 s during the burst (5 s client timeout).
   Reports the statuses, the median time to a 503 and to a 200, and the probes that timed out.
2. Slowloris: C connections sending one header byte every 0.5 s; reports how many the server
   closed and when (``serve.header_timeout_s``, 10 s by default), and a normal request
   answered meanwhile.

    .venv/bin/python benchmarks/bench_serve_hostile.py [--quick]

Issue 20 item 5 reported 300 x 5,000 rows with no 503 and a readiness probe timing out, and
1,000 trickling connections never closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import data, start_mlcd, stop


async def _request(port: int, raw: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()  # Connection: close
    writer.close()
    return status, time.perf_counter() - started


def _median(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2], 2) if values else None


async def burst(port: int, X: Any, n: int, rows: int) -> dict[str, Any]:
    import numpy as np

    data_rows = np.resize(X.to_numpy(), (rows, X.shape[1])).tolist()
    body = json.dumps({"columns": list(X.columns), "data": data_rows}).encode()
    head = (
        "POST /v1/models/bc/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    probe = b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    done: list[tuple[int, float]] = []
    probes: list[float | None] = []

    async def heavy() -> None:
        done.append(await _request(port, head + body))

    async def prober() -> None:
        while len(done) < n:
            try:
                probes.append((await asyncio.wait_for(_request(port, probe), 5))[1])
            except TimeoutError:
                probes.append(None)
            await asyncio.sleep(0.5)

    await asyncio.gather(prober(), *[heavy() for _ in range(n)])
    statuses: dict[str, int] = {}
    for status, _ in done:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    answered = [p for p in probes if p is not None]
    return {
        "requests": n,
        "rows": rows,
        "statuses": statuses,
        "median_503_s": _median([t for s, t in done if s == 503]),
        "median_200_s": _median([t for s, t in done if s == 200]),
        "probes": len(probes),
        "probe_timeouts": len(probes) - len(answered),
        "slowest_probe_s": round(max(answered), 2) if answered else None,
    }


async def slowloris(port: int, n: int, wait_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    closed: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while time.perf_counter() - started < wait_s:
            try:
                if await asyncio.wait_for(reader.read(100), 0.5) == b"":
                    closed.append(time.perf_counter() - started)
                    return
            except TimeoutError:
                pass
            try:
                writer.write(b"a")
                await writer.drain()
            except OSError:
                closed.append(time.perf_counter() - started)
                return
        writer.close()

    async def normal() -> int:
        await asyncio.sleep(2)
        return (await _request(port, b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Connection: close\r\n\r\n"))[0]  # fmt: skip

    status, *_ = await asyncio.gather(normal(), *[one() for _ in range(n)])
    return {
        "connections": n,
        "closed": len(closed),
        "first_closed_s": round(min(closed), 1) if closed else None,
        "last_closed_s": round(max(closed), 1) if closed else None,
        "normal_request_meanwhile": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 x 5,000 rows, 100 trickling")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    X, y = data()
    with tempfile.TemporaryDirectory() as work:
        process, url, _body = start_mlcd(Path(work), X, y, workers=1)
        port = int(url.split(":")[2].split("/")[0])
        try:
            requests, connections = (60, 100) if args.quick else (300, 1000)
            print(json.dumps({"burst": asyncio.run(burst(port, X, requests, 5000))}))
            print(json.dumps({"slowloris": asyncio.run(slowloris(port, connections, 30))}))
        finally:
            stop(process)


if __name__ == "__main__":
    main()
