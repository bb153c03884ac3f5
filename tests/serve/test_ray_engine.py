"""``mlcd serve --engine ray``: the model server as a Ray Serve deployment on a real cluster.

The two-node cluster (``ray start`` in two folders) and the S3 server come from
``tests/conftest_ray.py``; the registry lives in PostgreSQL and S3, as on a real cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tests.serve.conftest import cancer, cancer_model

from mlcd.errors import UsageError
from mlcd.serve.ray_engine import Scaling

if TYPE_CHECKING:  # imported by pytest as a plugin (an earlier import would skip its rewrite)
    from tests.conftest_ray import RayCluster, S3Server

pytest_plugins = ["tests.conftest_ray"]

PREDICT = "/v1/models/cancer/predict"
INFER = "/v2/models/cancer/infer"


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_scaling_flags() -> None:
    assert Scaling.parse(None, None).options() == {"num_replicas": 1}
    assert Scaling.parse(3, None).options() == {"num_replicas": 3}
    auto = Scaling.parse(None, "1:3").options()["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 3)
    for replicas, autoscale, message in (
        (2, "1:3", "--replicas and --autoscale exclude each other"),
        (0, None, "--replicas 0: at least 1 replica is needed"),
        (None, "3:1", "--autoscale '3:1' is not MIN:MAX"),
        (None, "two", "--autoscale 'two' is not MIN:MAX"),
    ):
        with pytest.raises(UsageError) as caught:
            Scaling.parse(replicas, autoscale)
        assert caught.value.message == message


@pytest.fixture(scope="module")
def serve_port() -> int:
    """One HTTP port for Ray Serve in this module: it is fixed when Serve first starts."""
    from tests.conftest_ray import free_port

    return free_port()


@pytest.fixture
def ray_project(
    tmp_path: Path, pg_url: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A project whose registry is in PostgreSQL and S3, with cancer v1 (champion) and v2."""
    from tests.conftest import run_cli

    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model, set_alias

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "proj"
    assert run_cli(["init", str(root)], cwd=tmp_path).returncode == 0
    bucket = s3_server.bucket()
    with open(root / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(
            f"\nstore: {pg_url}\nartifacts: s3://{bucket}/objects\nserve:\n  poll_interval_s: 0.5\n"
        )
    X, _ = cancer()
    with Project.open(root) as project:
        for number, c in ((1, 1.0), (2, 0.01)):
            save_model(cancer_model(c), root / f"pkg{number}", sample_input=X.head(50))
            register_from_path(project.store, project.objects, "cancer", root / f"pkg{number}")
        set_alias(project.store, "cancer", "champion", 1)
    yield root


def _serve(
    root: Path, cluster: RayCluster, s3: S3Server, port: int, *flags: str
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        **cluster.env,
        **s3.env,
        "PYTHONUNBUFFERED": "1",
        "MLCD_RAY_PROXY": "HeadOnly",  # two nodes on one host: one proxy, one port
        "MLCD_RAY_REPLICA_CPUS": "0.5",
        # autoscaling follows the test's load in seconds, not the defaults' 10 s up, 60 s down
        # and 30 s of averaged history (the cluster pushes its load metrics every second)
        "MLCD_RAY_UPSCALE_DELAY_S": "2",
        "MLCD_RAY_DOWNSCALE_DELAY_S": "5",
        "MLCD_RAY_LOOK_BACK_S": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer@champion", "--engine", "ray",
         "--port", str(port), *flags],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


class _Output:
    """Collects a process's output lines in a thread, so the test can wait on one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        def seen() -> bool:
            assert self.process.poll() is None or needle in self.text, self.text
            return needle in self.text

        _until(seen, timeout, f"{needle!r} in the output")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.thread.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.text


class _ServeProbe:
    """Serve's view of the application, asked by a separate driver: one process that joins the
    cluster once and answers a status line for each line it is sent (a new driver per poll
    spent seconds in ``ray.init`` each time, under the load the test makes)."""

    _SCRIPT = (
        "import json, sys, ray\n"
        "from ray import serve\n"
        "ray.init(log_to_driver=False, configure_logging=False)\n"
        "for _ in sys.stdin:\n"
        "    app = serve.status().applications['mlcd-cancer']\n"
        "    print(json.dumps({'status': str(app.status), 'replicas': {k: {str(s): n for s, n in "
        "d.replica_states.items()} for k, d in app.deployments.items()}}), flush=True)\n"
    )

    def __init__(self, cluster: RayCluster) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self._SCRIPT],
            env={**os.environ, **cluster.env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def status(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            raise AssertionError(f"the Serve status probe died: {self.process.stderr.read()}")
        return dict(json.loads(line))

    def running(self) -> int:
        return int(self.status()["replicas"]["mlcd-cancer"].get("RUNNING", 0))

    def close(self) -> None:
        """End of input: the driver leaves the cluster and exits; its pipes are closed."""
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def serve_probe(ray_cluster: RayCluster) -> Iterator[_ServeProbe]:
    probe = _ServeProbe(ray_cluster)
    yield probe
    probe.close()


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.postgres
@pytest.mark.xdist_group("ray")
def test_ray_serve_answers_and_swaps_with_zero_failed_requests(
    ray_project: Path,
    ray_cluster: RayCluster,
    s3_server: S3Server,
    serve_port: int,
    serve_probe: _ServeProbe,
) -> None:
    pytest.importorskip("ray.serve")
    from mlcd.project import Project
    from mlcd.registry import set_alias

    X, _ = cancer()
    v1 = cancer_model(1.0)
    process = _serve(ray_project, ray_cluster, s3_server, serve_port, "--replicas", "2")
    statuses: Counter[int] = Counter()
    versions: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()
    threads: list[threading.Thread] = []
    output = _Output(process)
    try:
        # Announced once Serve reports the application running: both replicas loaded v1.
        output.wait_for("serving cancer@champion on Ray Serve", timeout=300)
        with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=30) as client:
            assert client.get("/v2/health/ready").status_code == 200
            status = serve_probe.status()
            assert status["status"].endswith("RUNNING"), status
            assert sum(status["replicas"]["mlcd-cancer"].values()) == 2, status

            rows = X.iloc[:3]
            answer = client.post(PREDICT, json=rows.to_dict(orient="records"))
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == 1
            assert answer.json()["predictions"] == v1.predict(rows).tolist()
            infer = client.post(
                INFER,
                json={
                    "id": "7",
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": [3, 30],
                            "datatype": "FP64",
                            "data": rows.to_numpy().tolist(),
                        }
                    ],
                },
            )
            assert infer.status_code == 200, infer.text
            body = infer.json()
            assert (body["model_name"], body["model_version"], body["id"]) == ("cancer", "1", "7")
            outputs = {o["name"]: o for o in body["outputs"]}
            assert outputs["predict"]["data"] == v1.predict(rows).tolist()

        records = X.head(50).to_dict(orient="records")

        def client_loop(seed: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=30) as client:
                i = seed
                while not stop.is_set():
                    try:
                        response = client.post(PREDICT, json=[records[i % len(records)]])
                        code = response.status_code
                    except httpx.TransportError:
                        code = -1
                    i += 1
                    with lock:
                        statuses[code] += 1
                        if code == 200:
                            versions.append(response.json()["version"])

        threads = [threading.Thread(target=client_loop, args=(s,)) for s in range(4)]
        for thread in threads:
            thread.start()
        _until(lambda: len(versions) >= 100, timeout=180, what="100 answers before the swap")
        with Project.open(ray_project) as project:
            set_alias(project.store, "cancer", "champion", 2)
        _until(lambda: versions.count(2) >= 200, timeout=180, what="200 answers from v2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        text = output.stop()

    assert set(statuses) == {200}, statuses
    assert {1, 2} <= set(versions)
    assert 1 not in versions[-100:], "a replica kept serving v1 after the swap"
    assert "serving cancer@champion on Ray Serve as 'mlcd-cancer' (2 replica(s))" in text
    assert "deleting the Ray Serve application 'mlcd-cancer'" in text


def test_flags_that_do_not_go_with_the_engine_are_usage_errors(tmp_path: Path) -> None:
    from tests.conftest import run_cli
    from tests.conftest_ray import free_port

    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model, set_alias

    root = tmp_path / "proj"
    assert run_cli(["init", str(root)], cwd=tmp_path).returncode == 0
    X, _ = cancer()
    with Project.open(root) as project:
        save_model(cancer_model(), root / "pkg", sample_input=X.head(20))
        register_from_path(project.store, project.objects, "cancer", root / "pkg")
        set_alias(project.store, "cancer", "champion", 1)

    for flags, message in (
        (["--replicas", "2"], "--replicas and --autoscale go with --engine ray"),
        (["--engine", "kubernetes"], "--engine 'kubernetes': use uvicorn or ray"),
        (["--engine", "ray", "--workers", "2"], "--workers is for --engine uvicorn"),
        (["--engine", "ray", "--replicas", "2", "--autoscale", "1:3"], "exclude each other"),
        (["--engine", "ray", "--autoscale", "3"], "--autoscale '3' is not MIN:MAX"),
    ):
        result = run_cli(["serve", "cancer", *flags], cwd=root)
        assert result.returncode == 2, (flags, result.stderr)
        assert message in result.stderr, (flags, result.stderr)
    address = f"127.0.0.1:{free_port()}"
    result = run_cli(["serve", "cancer", "--engine", "ray"], cwd=root, env={"RAY_ADDRESS": address})
    assert result.returncode == 2, result.stderr
    assert f"no Ray cluster answers at RAY_ADDRESS={address}" in result.stderr


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.postgres
@pytest.mark.xdist_group("ray")
def test_autoscale_adds_a_replica_under_load_and_removes_it_after(
    ray_project: Path,
    ray_cluster: RayCluster,
    s3_server: S3Server,
    serve_port: int,
    serve_probe: _ServeProbe,
) -> None:
    """A forest of 300 trees scores 50-row batches slowly enough that eight clients keep
    more than two requests per replica in flight (Serve's target), until a third replica."""
    pytest.importorskip("ray.serve")
    from sklearn.ensemble import RandomForestClassifier

    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model, set_alias

    X, y = cancer()
    forest = RandomForestClassifier(n_estimators=300, random_state=0).fit(X, y)
    with Project.open(ray_project) as project:
        save_model(forest, ray_project / "forest", sample_input=X.head(50))
        version = register_from_path(
            project.store, project.objects, "cancer", ray_project / "forest"
        ).version.version
        set_alias(project.store, "cancer", "champion", version)
    process = _serve(ray_project, ray_cluster, s3_server, serve_port, "--autoscale", "1:3")
    output = _Output(process)
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    lock = threading.Lock()
    threads: list[threading.Thread] = []
    batch = X.head(50).to_dict(orient="records")

    def client_loop() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=60) as client:
            while not stop.is_set():
                try:
                    code = client.post(PREDICT, json=batch).status_code
                except httpx.TransportError:
                    code = -1
                with lock:
                    statuses[code] += 1

    try:
        output.wait_for("serving cancer@champion on Ray Serve", timeout=300)
        assert serve_probe.running() == 1
        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in threads:
            thread.start()
        _until(lambda: serve_probe.running() >= 2, timeout=240, what="a replica added")
        peak = serve_probe.running()
        with lock:
            answered_under_load = statuses[200]
        stop.set()
        for thread in threads:
            thread.join()
        _until(lambda: serve_probe.running() == 1, timeout=300, what="back to one replica")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        text = output.stop()

    assert 2 <= peak <= 3
    assert answered_under_load > 0
    assert set(statuses) == {200}, statuses  # new replicas joined only with the model loaded
    assert "(1 to 3 replicas)" in text
