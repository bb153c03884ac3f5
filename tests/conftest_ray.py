"""A real two-node Ray cluster and an S3 server (moto), both on 127.0.0.1, for the Ray tests.

Load it with ``pytest_plugins = ["tests.conftest_ray"]`` in a test module: the fixtures are
session-scoped, so every Ray test of a session (pipeline executor, Ray Serve) shares one
cluster. Mark such modules ``xdist_group("ray")`` so they share a pytest-xdist worker too.

Each node is a ``ray start --block`` process started in a folder of its own, in a process
group of its own: teardown signals those groups (by PID), never ``ray stop``, which would stop
every Ray process on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Enough for the small objects these tests move; Ray's default is 30 % of the machine's RAM.
OBJECT_STORE_BYTES = 100 * 1024 * 1024
STARTUP_S = 180.0
#: Set for the nodes and every driver. Auth explicitly off: a local ``ray.init()`` (another
#: test) leaves a token in ~/.ray/auth_token, which would turn it on for ``ray start --head``
#: but not for drivers given an address.
_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    # Serve's replicas and proxy report their load every second, not every 10 s, so that an
    # autoscaling test follows its load within seconds (a documented Ray Serve setting)
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_bin() -> str:
    return str(Path(sys.executable).parent / "ray")


def _wait_port(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not listen on {port} in time")


@dataclass
class S3Server:
    """A moto S3 server; ``env`` points AWS clients (s3fs, boto3) at it."""

    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def bucket(self) -> str:
        """A new empty bucket."""
        import boto3

        name = f"mlcd-{uuid.uuid4().hex[:10]}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=name)
        return name


@dataclass
class RayCluster:
    """A head node and one worker node, each started by ``ray start`` in its own folder."""

    address: str
    folders: tuple[Path, Path]
    processes: list[subprocess.Popen[bytes]]

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use the cluster as its driver."""
        return {"RAY_ADDRESS": self.address, **_RAY_ENV}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    try:
        yield S3Server(endpoint, env)
    finally:
        server.stop()


def _start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A node in a process group of its own, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each node's process group (``ray start --block`` and the daemons it started),
    then SIGKILL whatever of the group is left after a short grace period (some of Ray's
    daemons outlive ``ray start`` for good: a long grace only adds to every teardown)."""
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 5
    for process in reversed(processes):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


class _Keeper:
    """The worker's cluster: started by the first test that asks for it, stopped as soon as the
    next test does not need it (the Ray tests run one after another on one worker: their
    ``xdist_group("ray")``), so its daemons and Serve actors do not compete with the rest of
    the suite for the CPU; a later Ray test starts a new one."""

    def __init__(self) -> None:
        self.cluster: RayCluster | None = None
        self.base: Path | None = None

    def get(self) -> RayCluster:
        if self.cluster is None:
            self.base = Path(tempfile.mkdtemp(prefix="mlcd-ray-", dir="/tmp"))
            try:
                self.cluster = _start_cluster(self.base)
            except BaseException:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None
                raise
        return self.cluster

    def stop(self) -> None:
        cluster, base = self.cluster, self.base
        self.cluster = self.base = None
        if cluster is not None:
            _stop(cluster.processes)
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


_KEEPER = _Keeper()


def _start_cluster(base: Path) -> RayCluster:
    # Short paths: Ray puts unix sockets under its temp folder (a 107-byte limit).
    head_dir, worker_dir, temp_dir = base / "head", base / "worker", base / "t"
    for folder in (head_dir, worker_dir, temp_dir):
        folder.mkdir()
    port = free_port()
    env = {**os.environ, **_RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    common = [
        "--block",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
    ]
    processes: list[subprocess.Popen[bytes]] = []
    deadline = time.monotonic() + STARTUP_S
    try:
        head = _start(
            [_ray_bin(), "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={temp_dir}", *common],
            head_dir, env, base / "head.log",
        )  # fmt: skip
        processes.append(head)
        _wait_port(port, head, deadline)
        address = f"127.0.0.1:{port}"
        worker = _start(
            [_ray_bin(), "start", f"--address={address}", *common], worker_dir, env,
            base / "worker.log",
        )  # fmt: skip
        processes.append(worker)
        probe = (
            "import ray, time, sys\n"
            f"ray.init(address={address!r}, log_to_driver=False, configure_logging=False)\n"
            f"end = time.monotonic() + {STARTUP_S}\n"
            "while time.monotonic() < end:\n"
            "    if sum(1 for n in ray.nodes() if n['Alive']) == 2: sys.exit(0)\n"
            "    time.sleep(0.2)\n"
            "sys.exit(1)\n"
        )
        ready = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=STARTUP_S + 60
        )
        if ready.returncode != 0:
            logs = "\n".join(
                (base / name).read_text(errors="replace")[-2000:]
                for name in ("head.log", "worker.log")
            )
            raise RuntimeError(f"the Ray cluster did not come up:\n{ready.stderr!r}\n{logs}")
    except BaseException:
        _stop(processes)
        raise
    return RayCluster(address, (head_dir, worker_dir), processes)


@pytest.fixture(scope="session")
def _ray_keeper() -> Iterator[_Keeper]:
    """Stops whatever cluster is still up when the session ends."""
    try:
        yield _KEEPER
    finally:
        _KEEPER.stop()


@pytest.fixture
def ray_cluster(_ray_keeper: _Keeper) -> RayCluster:
    """The two-node cluster, shared by consecutive Ray tests (see ``_Keeper``)."""
    pytest.importorskip("ray")
    return _ray_keeper.get()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's own teardown: stop the cluster if the next test does not use it."""
    try:
        return (yield)
    finally:
        if _KEEPER.cluster is not None and (
            nextitem is None or "ray_cluster" not in getattr(nextitem, "fixturenames", ())
        ):
            _KEEPER.stop()
