"""Prediction-log fixtures: a moto S3 server on 127.0.0.1 and segments written where asked."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcd.store import Store

DAY = 86400.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_log(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/predictions``, with the environment every fsspec user reads
    (credentials and endpoint; subprocesses inherit it)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # instances keep the endpoint they were made with
    bucket = f"mlcd-log-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/predictions"


def traffic(n: int, seed: int, start: float, span: float, shift: float = 0.0) -> pd.DataFrame:
    """Logged rows: three numeric features, a category, a prediction and a probability, the
    server's columns (a few rejected rows), timestamps spread over ``span`` seconds."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n) + shift
    rows = pd.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "ts": np.sort(start + rng.uniform(0, span, n)),
            "status": np.where(rng.uniform(size=n) < 0.02, "rejected", "ok"),
            "error": None,
            "latency_ms": rng.uniform(1, 5, n),
            "x0": x0,
            "x1": rng.standard_normal(n),
            "x2": rng.exponential(1.0, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
        }
    )
    rows["prediction"] = (x0 > 0).astype(np.int64)
    rows["proba"] = 1 / (1 + np.exp(-x0))
    return rows


@dataclass
class Log:
    """Writes prediction-log segments to a local folder or an fsspec URL and registers them
    as the server does (relative path for a local log, full URL for a remote one)."""

    root: Path
    store: Store
    base: str = ".mlcd/predictions"

    def write(self, model: str, version: int | None, rows: pd.DataFrame) -> str:
        import fsspec
        import pyarrow as pa
        import pyarrow.parquet as pq

        from mlcd.store.predictions import add_segment

        rows = rows.copy()
        rows.insert(2, "model", model)
        rows.insert(3, "version", pd.array([version] * len(rows), dtype="Int64"))
        first, last = float(rows["ts"].min()), float(rows["ts"].max())
        day = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d")
        name = f"model={model}/date={day}/{int(first * 1000)}-{uuid.uuid4().hex}.parquet"
        path = f"{self.base}/{name}"
        table = pa.Table.from_pandas(rows, preserve_index=False)
        if "://" in path:
            with fsspec.open(path, "wb") as out:
                pq.write_table(table, out, compression="zstd")
        else:
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, self.root / path, compression="zstd")
        self.store.transact(
            lambda conn: add_segment(
                conn, model=model, version=version, path=path, rows=len(rows),
                first_at=first, last_at=last,
            )
        )  # fmt: skip
        return path


@pytest.fixture
def local_log(tmp_path: Path, open_store: Callable[..., Store]) -> Log:
    root = tmp_path / "local"
    root.mkdir()
    return Log(root, open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"))


@pytest.fixture
def remote_log(tmp_path: Path, open_store: Callable[..., Store], s3_log: str) -> Log:
    root = tmp_path / "remote"
    root.mkdir()
    return Log(root, open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"), s3_log)


class CountingProxy:
    """A TCP proxy on 127.0.0.1 in front of the S3 server that counts the HTTP requests it
    forwards, by method: what a reader really sent, seen from the wire."""

    def __init__(self, upstream: str) -> None:
        import threading

        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.counts = {}

    def count(self, method: str) -> int:
        with self.lock:
            return self.counts.get(method, 0)

    def _accept(self) -> None:
        import threading

        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        import re

        line = re.compile(rb"(?:^|\r\n)(GET|HEAD|PUT|POST|DELETE) /")
        tail = b""
        try:
            while data := source.recv(65536):
                if requests:  # request lines only: the bodies of a read are empty
                    found = line.findall(tail + data)
                    with self.lock:
                        for method in found:
                            key = method.decode()
                            self.counts[key] = self.counts.get(key, 0) + 1
                    tail = data[-8:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.server.close()
        with self.lock:
            for sock in self.sockets:
                sock.close()


@pytest.fixture
def counted_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingProxy]:
    """The session's moto server behind a request-counting proxy, set as the endpoint every
    S3 client of the test (and its subprocesses) uses."""
    proxy = CountingProxy(s3_endpoint)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": proxy.endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield proxy
    finally:
        proxy.close()
