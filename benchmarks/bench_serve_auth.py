"""The cost of token checks on the predict path (issue 12: under 20 µs per request).

Runs the real ASGI layers of ``mlcd.serve.auth`` in front of a trivial app (so only their
cost is measured) with a real SQLite store holding the token:

- ``gate_off``: the predict route open (bound to loopback): the gate only looks at the path;
- ``gate_on``: a ``predict`` token required and sent; the token is in the server's cache
  (what every request after the first one sees within ``ttl_s``);
- ``transport``: security headers and the request-id check (always on);
- ``all_on``: the whole stack ``mlcd serve`` puts in front of the app beyond loopback
  (security headers, trusted hosts, token check).

    .venv/bin/python benchmarks/bench_serve_auth.py [--n 50000]

Each figure is the median of 5 runs of N sequential requests, per request, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


async def _inner(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _per_request_us(app: Any, headers: list[tuple[bytes, bytes]], n: int) -> float:
    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(n):
            scope = {"type": "http", "method": "POST", "path": "/v1/models/bc/predict",
                     "headers": list(headers), "scheme": "http"}  # fmt: skip
            await app(scope, receive, send)
        return (time.perf_counter() - started) / n * 1e6

    return statistics.median(asyncio.run(run()) for _ in range(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    n = parser.parse_args().n
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from mlcd.serve.auth import Authenticator, AuthGate, SecureTransport, allowed_hosts
    from mlcd.store import Store, tokens

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'mlcd.db'}")
        with store.write() as conn:
            secret = tokens.create(conn, "bench", "predict")
        auth = Authenticator(store, ttl_s=3600)
        host = [(b"host", b"127.0.0.1:8000")]
        bearer = [*host, (b"authorization", f"Bearer {secret}".encode())]
        base = _per_request_us(_inner, host, n)
        off = _per_request_us(AuthGate(_inner, auth, open_predict=True), host, n)
        on = _per_request_us(AuthGate(_inner, auth, open_predict=False), bearer, n)
        transport = _per_request_us(SecureTransport(_inner), host, n)
        stack = SecureTransport(
            TrustedHostMiddleware(
                AuthGate(_inner, auth, open_predict=False),
                allowed_hosts=allowed_hosts("0.0.0.0"),
                www_redirect=False,
            )
        )
        everything = _per_request_us(stack, bearer, n)
        store.dispose()
    print(f"python {sys.version.split()[0]}, {n} requests x 5 runs, µs per request (median)")
    print(f"  bare app                      {base:6.2f}")
    print(f"  gate off (loopback)           {off - base:+6.2f}")
    print(f"  gate on (cached predict token){on - base:+6.2f}")
    print(f"  security headers + request id {transport - base:+6.2f}")
    print(f"  all layers, token required    {everything - base:+6.2f}")


if __name__ == "__main__":
    main()
