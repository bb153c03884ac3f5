"""Fixtures: a real registry with small scikit-learn models, and real uvicorn servers."""

from __future__ import annotations

import copy
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlcd.config import Serve
from mlcd.objects import ObjectStore, open_object_store
from mlcd.store import Store


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    """A store, an object store and helpers to register real models."""

    root: Path
    store: Store
    objects: ObjectStore

    def register(
        self,
        name: str,
        model: Any,
        sample: Any,
        alias: str | None = "champion",
        trusted: bool = False,
        **save: Any,
    ) -> int:
        """Save, register and (optionally) point ``alias`` at a model; returns its version."""
        from mlcd.registry import register_from_path, save_model, set_alias

        folder = self.root / "packages" / f"{name}-{time.monotonic_ns()}"
        save_model(model, folder, sample_input=sample, trusted=trusted, **save)
        version = register_from_path(self.store, self.objects, name, folder).version.version
        if alias:
            set_alias(self.store, name, alias, version)
        return version

    def source(self, trusted: bool = False) -> Any:
        from mlcd.serve.holder import RegistrySource

        return RegistrySource(self.store, self.objects, self.root / "cache", trusted=trusted)


@pytest.fixture
def registry(tmp_path: Path, open_store: Callable[..., Store]) -> Registry:
    """A fresh SQLite store and local object store."""
    store = open_store(f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}")
    objects = open_object_store(str(tmp_path / "state" / "objects"))
    return Registry(tmp_path, store, objects)


@functools.cache
def _cancer() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    """The breast-cancer data (30 float columns, binary target); a fresh copy for each caller."""
    X, y = _cancer()
    return X.copy(), y.copy()


@functools.cache
def _cancer_model(c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    X, y = _cancer()
    return LogisticRegression(C=c, max_iter=5000).fit(X, y)


def cancer_model(c: float = 1.0) -> Any:
    """A LogisticRegression on the breast-cancer data: fitted once per process and ``C`` (the
    fit is deterministic and takes seconds), each caller gets its own copy."""
    return copy.deepcopy(_cancer_model(c))


def mixed_data(rows: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    """A float, an int and a text column; binary target."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": rng.integers(0, 10, size=rows),
            "color": rng.choice(["red", "green", "blue"], size=rows),
        }
    )
    target = ((frame["x"] + (frame["color"] == "red")) > 0.5).astype(int)
    return frame, target


def mixed_model() -> Any:
    """One-hot on the text column, then logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = mixed_data()
    pre = ColumnTransformer(
        [("color", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(X, y)


@dataclass
class Running:
    """A server running in a thread of the test process."""

    url: str
    app: Any
    server: Any
    thread: threading.Thread
    client: httpx.Client
    #: a ``feedback`` token the fixture created; ``client`` sends it on every request
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header with :attr:`token`."""
        return {"authorization": f"Bearer {self.token}"}

    @property
    def service(self) -> Any:
        return self.app.state.service

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get("/v2/health/ready").status_code == 200:
                return
            primary = self.service.primary
            if primary.failures:
                raise AssertionError(f"the model failed to load: {primary.last_error}")
            time.sleep(0.05)
        raise AssertionError(f"server at {self.url} not ready after {timeout} s")


@pytest.fixture
def serve(registry: Registry) -> Iterator[Callable[..., Running]]:
    """Start ``create_app(...)`` under uvicorn on a free 127.0.0.1 port; stopped at the end."""
    import uvicorn

    from mlcd.serve.app import create_app
    from mlcd.serve.server import uvicorn_config

    running: list[Running] = []

    def start(
        ref: str = "cancer@champion",
        *,
        wait: bool = True,
        trusted: bool = False,
        log: bool = True,
        settings: Serve | None = None,
        **kwargs: Any,
    ) -> Running:
        settings = settings or Serve(poll_interval_s=0.2, fleet_interval_s=0.2)
        app = create_app(
            registry.source(trusted=trusted),
            ref,
            store=registry.store,
            settings=settings,
            log_folder=registry.root / "state" / "predictions" if log else None,
            project_root=registry.root,
            **kwargs,
        )
        port = free_port()
        served = settings.model_copy(update={"host": "127.0.0.1", "port": port, "workers": 1})
        config = uvicorn_config(app, served, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        from mlcd.store import tokens

        with registry.store.write() as conn:
            token = tokens.create(conn, f"test-feedback-{port}", "feedback")
        client = httpx.Client(
            base_url=url, timeout=30, headers={"authorization": f"Bearer {token}"}
        )
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        run = Running(url, app, server, thread, client, token)
        running.append(run)
        if wait:
            run.wait_ready()
        return run

    yield start
    for run in running:
        run.client.close()
        run.server.should_exit = True
        run.thread.join(30)


@pytest.fixture
def cancer_server(
    registry: Registry, serve: Callable[..., Running]
) -> tuple[Running, pd.DataFrame, Any]:
    """The breast-cancer LogisticRegression registered as cancer@champion and served."""
    X, _y = cancer()
    model = cancer_model()
    registry.register("cancer", model, X.head(100))
    return serve(), X, model
