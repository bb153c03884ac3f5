"""The metrics folders of `mlcd serve --workers N` servers that were killed (SIGKILL) are
removed by the next server; folders of live servers, and of servers starting, are kept."""

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
from mlcd.serve.metrics import FOLDER_PREFIX, sweep_stale_folders


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _folder(parent: Path, name: str, files: list[str], age_s: float) -> Path:
    folder = parent / f"{FOLDER_PREFIX}{name}"
    folder.mkdir()
    for file in files:
        (folder / file).write_bytes(b"")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_only_old_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    killed = _folder(tmp_path, "killed", [f"counter_{dead}.db", f"mlcd_live_{dead}.json"], 3600)
    empty = _folder(tmp_path, "empty", [], 3600)
    live = _folder(tmp_path, "live", [f"counter_{dead}.db", f"histogram_{alive}.db"], 3600)
    starting = _folder(tmp_path, "starting", [], 5)
    other = tmp_path / "someone-else"
    other.mkdir()
    assert sorted(sweep_stale_folders(tmp_path)) == sorted([killed, empty])
    assert not killed.exists() and not empty.exists()
    assert live.is_dir() and starting.is_dir() and other.is_dir()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _start(root: Path, temp: Path) -> tuple[subprocess.Popen[str], int]:
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
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"mlcd serve did not answer /metrics: {process.communicate()[0]}")


def test_a_server_removes_the_folder_a_killed_server_left(tmp_path: Path) -> None:
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
    temp = tmp_path / "tmp"
    temp.mkdir()

    first, _port = _start(root, temp)
    pids = [first.pid, *_children(first.pid)]
    try:
        (left,) = temp.glob(f"{FOLDER_PREFIX}*")
    finally:
        for pid in pids:  # killed: no chance to clean up
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        first.communicate(timeout=30)
    assert left.is_dir()
    then = time.time() - 3600
    os.utime(left, (then, then))  # left an hour ago

    second, _port = _start(root, temp)
    try:
        assert not left.exists(), "the killed server's folder was not removed"
        assert len(list(temp.glob(f"{FOLDER_PREFIX}*"))) == 1  # the second server's own
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output
    assert not list(temp.glob(f"{FOLDER_PREFIX}*"))
