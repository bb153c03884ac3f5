"""`mlcd serve --workers N` removes its prometheus multiprocess folder when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.serve.conftest import cancer, cancer_model, free_port

from mlcd.registry import save_model, set_alias


def test_serve_with_two_workers_removes_its_metrics_folder_on_sigterm(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    from mlcd.project import Project
    from mlcd.registration import register_declared_models

    root = tmp_path / "proj"
    assert run_cli(["init", str(root)], cwd=tmp_path).returncode == 0
    X, _ = cancer()
    save_model(cancer_model(), root / "model", sample_input=X.head(100))
    with open(root / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write("\nmodels:\n  cancer:\n    path: model\n")
    with Project.open(root) as project:
        register_declared_models(root, project.config, project.store, project.objects)
        set_alias(project.store, "cancer", "champion", 1)

    temp = tmp_path / "tmp"  # mkdtemp puts the metrics folder here
    temp.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer", "--workers", "2",
         "--port", str(port)],
        cwd=root,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.1)
        assert ready, "mlcd serve did not answer /metrics"
        assert len(list(temp.glob("mlcd-metrics-*"))) == 1  # the shared folder exists while up
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert not list(temp.glob("mlcd-metrics-*")), "the metrics folder was left behind"
