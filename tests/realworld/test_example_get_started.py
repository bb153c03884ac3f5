"""A real project ported to mlcd: iterative/example-get-started (see example_get_started/README.md).

Its pipeline (the same stages, params and files as the public project, in code of our own:
the public repository has no licence) is ported to ``mlcd.yaml`` by hand as docs/pipelines.md and docs/config.md tell a user, fed with synthetic
posts in its input format, and driven through the real CLI as subprocesses: ``mlcd run`` →
``mlcd models register`` (one call, from the pickle) → ``mlcd evaluate`` → ``mlcd models
promote`` → ``mlcd serve`` (a real server) → 1,000 logged predictions over HTTP → ``mlcd
monitor``. Every step must exit as documented and print no warning (no scikit-learn
"feature names" flood, no library warning), and held-out rows of the training distribution
must not be reported as drift.

Each step is a module-scoped fixture built on the previous one, so each test names the step
that failed and no test depends on the order the tests run in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.realworld.synthetic import write_posts

# One worker builds the project once for all the steps (module-scoped fixtures).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("realworld_example_get_started")]

EXAMPLE = Path(__file__).resolve().parent / "example_get_started"
BIN = Path(sys.executable).parent
ROWS = 1000
# A line that warns: a Python warning category, a logger's WARNING, or scikit-learn's
# "X has feature names, but ... was fitted without feature names".
WARNING = re.compile(r"warn|feature names", re.IGNORECASE)


def _env(tmp: Path) -> dict[str, str]:
    """The environment of a user's shell: the venv's ``mlcd`` and ``python`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCD_", "PYTEST_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(tmp / "mplconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        HOME=str(tmp / "home"),
    )
    (tmp / "home").mkdir(exist_ok=True)
    return env


@dataclass
class Project:
    """The ported project in its own folder, and the environment commands run in."""

    root: Path
    env: dict[str, str]
    run_report: dict[str, Any] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a command in the project as a user would in a shell."""
        return subprocess.run(
            list(args),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def mlcd(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the real ``mlcd`` console script."""
        return self.run(str(BIN / "mlcd"), *args, timeout=timeout)


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if WARNING.search(line)]


def _ok(result: subprocess.CompletedProcess[str], step: str) -> subprocess.CompletedProcess[str]:
    """``result`` exited 0 and printed no warning."""
    assert result.returncode == 0, (
        f"{step}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    assert not _warnings(result.stderr), f"{step} printed warnings:\n" + "\n".join(
        _warnings(result.stderr)[:10]
    )
    assert not [line for line in result.stdout.splitlines() if line.lower().startswith("warning")]
    return result


# ---------------------------------------------------------------- the steps
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The upstream project, ported, with synthetic data, committed, and ``mlcd run`` done."""
    tmp = tmp_path_factory.mktemp("example_get_started")
    root = tmp / "example-get-started"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(EXAMPLE / name, root / name)
    shutil.copytree(EXAMPLE / "src", root / "src")
    project = Project(root, _env(tmp))

    init = _ok(project.mlcd("init"), "mlcd init")
    assert "created mlcd.yaml" in init.stdout and "kept    params.yaml" in init.stdout
    # The port: mlcd.yaml written by hand from dvc.yaml (the user's edit of the scaffold).
    shutil.copy(EXAMPLE / "mlcd.yaml", root / "mlcd.yaml")
    write_posts(root / "data" / "data.xml")
    _ok(project.mlcd("data", "add", "data/data.xml"), "mlcd data add")
    assert (root / "data" / "data.xml.mlcd").is_file()
    for command in (
        ("git", "init", "-q", "-b", "main"),
        ("git", "config", "user.name", "Example User"),
        ("git", "config", "user.email", "user@example.com"),
        ("git", "add", "."),
        ("git", "commit", "-q", "-m", "example-get-started ported to mlcd"),
    ):
        assert project.run(*command).returncode == 0, command
    _ok(project.mlcd("config", "validate"), "mlcd config validate")

    result = _ok(project.mlcd("run", "--json"), "mlcd run")
    project.run_report = json.loads(result.stdout)
    return project


@pytest.fixture(scope="module")
def registered(pipeline: Project) -> int:
    """``model.pkl`` registered in one call; the version number."""
    result = _ok(
        pipeline.mlcd(
            "models",
            "register",
            "so",
            "model.pkl",
            "--flavor",
            "sklearn",
            "--trust",
            "--sample",
            "data/tables/sample.csv",
            "--json",
        ),
        "mlcd models register",
    )
    return int(json.loads(result.stdout)["version"])


@pytest.fixture(scope="module")
def evaluated(pipeline: Project, registered: int) -> subprocess.CompletedProcess[str]:
    """``mlcd evaluate`` of the registered version against the (absent) champion."""
    return _ok(
        pipeline.mlcd(
            "evaluate",
            "so",
            "--candidate",
            str(registered),
            "--report-dir",
            "reports/eval",
            "--resamples",
            "200",
        ),
        "mlcd evaluate",
    )


@pytest.fixture(scope="module")
def promoted(
    pipeline: Project, registered: int, evaluated: subprocess.CompletedProcess[str]
) -> subprocess.CompletedProcess[str]:
    """The evaluated version promoted to champion through the gates of mlcd.yaml."""
    return _ok(
        pipeline.mlcd("models", "promote", "so", str(registered), "--resamples", "200"),
        "mlcd models promote",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except OSError:
        return 0


def _post(url: str, body: object) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return dict(json.load(response))


@dataclass
class Served:
    """What the server answered and printed."""

    answers: list[dict[str, Any]]
    stderr: str
    returncode: int


@pytest.fixture(scope="module")
def served(pipeline: Project, promoted: subprocess.CompletedProcess[str]) -> Iterator[Served]:
    """``mlcd serve so`` on a free port, sent 1,000 held-out rows over HTTP, then stopped."""
    import pandas as pd

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = pipeline.root / "serve.stderr"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [str(BIN / "mlcd"), "serve", "so", "--port", str(port)],
            cwd=pipeline.root,
            env=pipeline.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 180
        while _get(f"{base}/v2/health/ready") != 200:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server was not ready in 180 s"
            time.sleep(0.2)
        rows = pd.read_csv(pipeline.root / "data" / "tables" / "test.csv").drop(columns="label")
        assert len(rows) >= ROWS
        rows = rows.head(ROWS)
        answers = []
        for start in range(0, ROWS, 20):  # 50 requests of 20 rows, in MLflow's split shape
            chunk = rows.iloc[start : start + 20]
            body = {
                "dataframe_split": {"columns": list(chunk.columns), "data": chunk.values.tolist()}
            }
            answers.append(_post(f"{base}/v1/models/so/predict", body))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    yield Served(answers, log.read_text(), server.returncode)


# ---------------------------------------------------------------- the tests
def test_ported_pipeline_runs_every_upstream_stage(pipeline: Project) -> None:
    report = pipeline.run_report
    outcomes = {stage["stage"]: stage["outcome"] for stage in report["stages"]}
    assert outcomes == dict.fromkeys(["prepare", "featurize", "train", "evaluate", "tables"], "ran")
    # the metrics file, declared inside the stage's own out folder, is read into the run.
    metrics = json.loads((pipeline.root / "eval" / "metrics.json").read_text())
    assert metrics["roc_auc"]["test"] > 0.8
    shown = _ok(pipeline.mlcd("runs", "show", report["run_id"], "--json"), "mlcd runs show")
    assert json.loads(shown.stdout)["metrics"]["roc_auc.test"]["value"] == pytest.approx(
        metrics["roc_auc"]["test"]
    )
    # Nothing changed: nothing runs, and the status check passes.
    again = _ok(pipeline.mlcd("run", "--json"), "mlcd run (again)")
    assert {s["outcome"] for s in json.loads(again.stdout)["stages"]} <= {"skipped"}
    _ok(pipeline.mlcd("status", "--check"), "mlcd status --check")


def test_pickled_model_registered_in_one_call(pipeline: Project, registered: int) -> None:
    shown = json.loads(
        _ok(pipeline.mlcd("models", "show", f"so/{registered}", "--json"), "models show").stdout
    )
    assert shown["flavor"] == "sklearn"
    signature = shown["package"]["signature"]
    # The forest was fitted on a sparse matrix without names: it must be fed an array.
    assert signature["input_type"] == "ndarray"
    names = [column["name"] for column in signature["inputs"]]
    assert len(names) == 200 and "ggplot" in names and "label" not in names


def test_candidate_evaluated_then_promoted_through_the_gates(
    pipeline: Project,
    registered: int,
    evaluated: subprocess.CompletedProcess[str],
    promoted: subprocess.CompletedProcess[str],
) -> None:
    assert "PASSED" in evaluated.stdout and "roc_auc >= 0.8" in evaluated.stdout
    assert (pipeline.root / "reports" / "eval" / "report.json").is_file()
    assert f"so@champion: unset → {registered}" in promoted.stdout
    champion = json.loads(pipeline.mlcd("models", "show", "so@champion", "--json").stdout)
    assert champion["version"] == registered


def test_server_answers_1000_rows_without_a_warning(
    pipeline: Project, registered: int, served: Served
) -> None:
    assert sum(len(a["predictions"]) for a in served.answers) == ROWS
    assert {a["version"] for a in served.answers} == {registered}
    assert all(len(a["probabilities"]) == len(a["predictions"]) for a in served.answers)
    # Stopped by SIGTERM, as a process manager stops it: drained, log flushed, no crash.
    assert served.returncode in (0, -signal.SIGTERM), served.stderr
    assert "Finished server process" in served.stderr
    assert not _warnings(served.stderr), served.stderr


def test_monitor_finds_no_drift_on_1000_held_out_rows(pipeline: Project, served: Served) -> None:
    result = pipeline.mlcd("monitor", "so", "--last", str(ROWS), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _warnings(result.stderr), result.stderr
    report = json.loads(result.stdout)
    assert report["window"]["rows"] == ROWS and report["window"]["rejected"] == 0
    assert report["failed"] is False, report["failures"]
    assert report["warnings"] == [], report["warnings"]
    drift = report["drift"]
    assert drift["dataset_drift"] is False and drift["prediction_drift"] is False
    assert drift["tested"] >= 190
    # ~200 KS tests at p < 0.05 flag a few healthy columns by chance (2 of 199 with this seed);
    # the port sets monitor.drift.correction: bh, so held-out rows flag none.
    assert drift["drifted"] == [], drift["drifted"]
