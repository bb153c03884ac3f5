"""Shared fixtures: real SQLite files, real PostgreSQL databases, real CLI subprocesses.

The suite runs in parallel under pytest-xdist (``make test``): every fixture here gives each test
its own folder (``tmp_path``), its own PostgreSQL database and free ports, so tests never share
state across workers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

# One BLAS/OpenMP thread per process: the xdist workers and the CLI subprocesses they start
# already share the machine's cores, and OpenBLAS threads spinning on a busy machine made one
# small LogisticRegression fit 10x slower. Set before numpy is imported; the shell can override.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def worker_id() -> str:
    """The xdist worker running this process (``gw0``, ``gw1``...), ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _require_pg() -> None:
    if not _pg_reachable():
        if os.environ.get("MLCD_REQUIRE_POSTGRES") or os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI but is not answering")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not answering")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for this test, dropped afterwards.

    Named after the xdist worker (``mlcd_t_gw0_...``) plus a random part, because other test
    sessions (other developers, other CI jobs) may share the same server at the same time.
    """
    _require_pg()
    import psycopg

    name = f"mlcd_t_{worker_id()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _fresh_s3_clients() -> Iterator[None]:
    """Forget s3fs's cached filesystems after each test: they keep the endpoint of the moto
    server they were made for (AWS_ENDPOINT_URL is not part of their cache key), and a later
    test in the same worker talks to another server."""
    yield
    s3fs = sys.modules.get("s3fs")
    if s3fs is not None:
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port for the session (one per xdist worker); each
    test makes its own bucket."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite store file in the test's folder."""
    return f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def _init_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``mlcd init`` makes, made once per session (per xdist worker) by the real CLI."""
    base = tmp_path_factory.mktemp("init-template")
    result = run_cli(["init", str(base / "proj")], cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "proj"


@pytest.fixture
def project(tmp_path: Path, _init_template: Path) -> Path:
    """A fresh project made by ``mlcd init``: a copy of the session's (init writes no absolute
    path, so the copy is what init would make here, without a CLI start per test)."""
    root = tmp_path / "proj"
    shutil.copytree(_init_template, root, symlinks=True)
    return root


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real ``mlcd`` CLI in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def open_store() -> Iterator[object]:
    """A factory of stores that are all disposed of when the test ends."""
    from mlcd.store import Store

    opened: list[Store] = []

    def factory(url: str, **kwargs: object) -> Store:
        store = Store(url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.dispose()


#: Scheduled first (``make test`` passes --no-loadscope-reorder, so the workers' order below is
#: the order xdist hands work out): the longest serial chain, the Ray group (a two-node cluster,
#: pipelines, Ray Serve swap and autoscale; its cluster users first, back to back, so the
#: cluster starts once), then the longest single tests (the demo, end to end), then the other
#: slow tests, then everything else.
_FIRST_GROUPS = ("ray",)
_LONGEST = ("tests/test_demo_lifecycle.py::",)


def _xdist_groups(item: pytest.Item) -> list[str]:
    return sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )


def _tag_xdist_group(item: pytest.Item, groups: list[str]) -> None:
    """Give the test its ``@group`` nodeid suffix, which is how ``--dist loadgroup`` keeps a
    group on one worker. pytest-xdist sets ``item._nodeid``, which pytest 9.2 no longer reads
    (its nodeid comes from ``item._id``): without this every group was spread over both
    workers (two Ray clusters, two CPU hogs at once)."""
    suffix = "@" + "_".join(groups)
    if item.nodeid.endswith(suffix) or not hasattr(item, "_id"):
        return
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(item.nodeid + suffix)


def _schedule_rank(item: pytest.Item, groups: list[str]) -> int:
    if any(group in _FIRST_GROUPS for group in groups):
        return 0 if "ray_cluster" in getattr(item, "fixturenames", ()) else 1
    if item.nodeid.startswith(_LONGEST):
        return 2
    return 3 if item.get_closest_marker("slow") is not None else 4


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers: tag grouped tests for --dist loadgroup, and start the longest work
    first (the Ray group, then slow tests), so no long test runs alone at the end."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    loadgroup = bool(getattr(config.option, "loadgroup", False))
    ranks: dict[str, int] = {}
    for item in items:
        groups = _xdist_groups(item)
        if groups and loadgroup:
            _tag_xdist_group(item, groups)
        ranks[item.nodeid] = _schedule_rank(item, groups)
    items.sort(key=lambda item: ranks[item.nodeid])  # stable: file order within a rank


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int) -> None:
    """Say loudly when nothing ran: exit code 5 fails ``make test``, and this says why."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        terminalreporter.write_line(
            "no tests were collected or selected: check the paths, -k and -m arguments",
            red=True,
        )
