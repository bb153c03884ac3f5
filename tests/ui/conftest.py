"""The real ``mlcd ui`` on a free 127.0.0.1 port over a real project, and Debian's chromium.

The project (made once per session): 120 runs logged through ``mlcd.start_run`` in a
subprocess (params, a 30-step loss curve, roc_auc, a tag; one run named like a script tag),
a model with two versions registered from pickles, and a write token. Playwright drives the
system chromium (``/usr/bin/chromium``, installed with apt by ``.ci/run``; never
``playwright install``). Screenshots go to ``$MLCD_TEST_ARTIFACTS/ui`` (default: the session's
temp folder) so CI can keep them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RUNS = 120
XSS_NAME = "<script>alert(1)</script>"

SEED = f"""
import mlcd
for i in range({RUNS}):
    name = {XSS_NAME!r} if i == 5 else f"run-{{i}}"
    with mlcd.start_run(name=name):
        mlcd.log_params({{"lr": round(0.1 * (i % 5), 2), "model": "gbm" if i % 2 else "rf"}})
        for step in range(30):
            mlcd.log_metric("loss", 1.0 / (step + 1) + i * 0.001, step=step)
        mlcd.log_metric("roc_auc", round(0.5 + ((i * 37) % 100) / 200, 4))
        mlcd.set_tag("branch", "main" if i % 3 else "dev")
mlcd.flush()

import pickle, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
y = (X["a"] > 0).astype(int)
X.to_csv("sample.csv", index=False)
X.assign(y=y).to_csv("eval.csv", index=False)
import yaml
config = yaml.safe_load(open("mlcd.yaml"))
config["models"] = {{"churn": {{"path": "model0.pkl", "task": "classification", "target": "y",
                            "eval_data": "eval.csv"}}}}
config["gates"] = {{"staging": ["accuracy >= 0.5"]}}
config["stages"] = {{"hello": {{"cmd": "python -c \\"open('out.txt', 'w').write('hi')\\"",
                               "outs": ["out.txt"]}}}}
yaml.safe_dump(config, open("mlcd.yaml", "w"), sort_keys=False)
for n, c in enumerate((1.0, 0.1)):
    pickle.dump(LogisticRegression(C=c).fit(X, y), open(f"model{{n}}.pkl", "wb"))
"""


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def mlcd(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI (:func:`tests.conftest.run_cli`), which must succeed."""
    result = run_cli(list(args), cwd=root)
    assert result.returncode == 0, f"mlcd {args}: {result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ui:
    """A running ``mlcd ui`` and what the tests need to know about its project."""

    root: Path
    url: str
    write_token: str
    read_token: str
    process: subprocess.Popen[bytes]


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mlcd ui exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/static/ui.css", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("mlcd ui did not answer within 60 s")


def start_ui(root: Path, host: str = "127.0.0.1") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mlcd"), "ui", "--host", host, "--port", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait(url, process)
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("ui") / "project"
    mlcd(root.parent, "init", str(root))
    run(root, sys.executable, "-c", SEED)
    for n in range(2):
        mlcd(root, "models", "register", "churn", f"model{n}.pkl",
            "--flavor", "sklearn", "--trust", "--sample", "sample.csv")  # fmt: skip
    mlcd(root, "run")  # one pipeline run: the pipeline page's last run
    for _ in range(2):  # two monitoring passes: a series over time on the monitoring page
        mlcd(root, "monitor", "churn/1", "--reference", "sample.csv",
            "--current", "sample.csv")  # fmt: skip
    tokens = {}
    for name, role in (("ui-writer", "write"), ("ui-reader", "read")):
        created = mlcd(root, "tokens", "create", name, "--role", role, "--json")
        tokens[role] = json.loads(created.stdout)["token"]
    return root, tokens["write"], tokens["read"]


@pytest.fixture(scope="session")
def ui(ui_project: tuple[Path, str, str]) -> Iterator[Ui]:
    root, write_token, read_token = ui_project
    process, url = start_ui(root)
    yield Ui(root, url, write_token, read_token, process)
    stop(process)


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """Chromium for this package's tests. Package scope, not session: Playwright's sync API
    keeps an event loop running in the main thread while it is open, and a later test of
    another package on the same worker could not ``asyncio.run`` anything."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (.ci/run installs it with apt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # WebGL (plotly's parallel coordinates) through the software renderer
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("MLCD_TEST_ARTIFACTS")
    folder = Path(base) / "ui" if base else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
