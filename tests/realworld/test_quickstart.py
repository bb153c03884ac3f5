"""docs/quickstart.md, run as written: its commands in order, in an empty folder.

The page's fenced blocks are the script: ``console`` blocks hold the commands (lines starting
with ``$ ``; the other lines are sample output), ``sh`` blocks hold setup commands, and a block
with ``title="PATH"`` is a file the reader writes. ``pip install`` is skipped (the test runs in
the venv that has mlcd), a command ending in ``&`` runs in the background until the end, and the
server's port 8000 becomes a free port. Each command must exit 0, as the page says, and print
no warning.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
TITLE = re.compile(r'title="([^"]+)"')
WARNING = re.compile(r"warn|feature names", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    """One thing the reader does: run a command, or write a file."""

    kind: str  # "command", "setup" or "file"
    text: str
    path: str | None = None


def steps(markdown: str) -> list[Step]:
    """The page's commands and files, in page order."""
    out = []
    for match in FENCE.finditer(markdown):
        language, info, body = match.groups()
        title = TITLE.search(info)
        if title:
            out.append(Step("file", body, title.group(1)))
        elif language == "console":
            out += [
                Step("command", line[2:]) for line in body.splitlines() if line.startswith("$ ")
            ]
        elif language == "sh":
            out += [Step("setup", line) for line in body.splitlines() if line.strip()]
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_logged_rows(folder: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(folder.rglob("*.parquet")):
        assert time.monotonic() < deadline, f"no prediction-log segment under {folder}"
        time.sleep(0.1)


def test_quickstart_has_ten_commands_from_pip_install_to_monitor() -> None:
    commands = [s.text for s in steps(DOC.read_text(encoding="utf-8")) if s.kind == "command"]
    assert len(commands) == 10, commands
    assert commands[0] == "pip install mlcd"
    assert [c.split()[1] for c in commands if c.startswith("mlcd ")] == [
        "init",
        "data",
        "run",
        "models",
        "evaluate",
        "models",
        "serve",
        "monitor",
    ]
    assert any(c.startswith("curl ") for c in commands)


def test_quickstart_commands_run_as_written(tmp_path: Path) -> None:
    project = tmp_path / "iris"
    project.mkdir()
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCD_", "PYTEST_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", HOME=str(tmp_path / "home"))
    port = str(_free_port())
    background: list[subprocess.Popen[str]] = []
    outputs: dict[str, str] = {}
    try:
        for step in steps(DOC.read_text(encoding="utf-8")):
            if step.kind == "file":
                assert step.path is not None
                target = project / step.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step.text, encoding="utf-8")
                continue
            command = step.text.replace("8000", port)
            if command.startswith("pip install"):
                continue
            if command.startswith("mlcd monitor"):
                # A person takes more than the log's 2 s flush to type the next command; wait
                # for the logged row the way that pause would (the page says so too).
                _wait_for_logged_rows(project / ".mlcd" / "predictions")
            if command.endswith("&"):
                background.append(
                    subprocess.Popen(
                        ["bash", "-c", "exec " + command.removesuffix("&").strip()],
                        cwd=project,
                        env=env,
                        text=True,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )
                continue
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            warnings = [line for line in result.stderr.splitlines() if WARNING.search(line)]
            assert not warnings, f"{command} warned:\n" + "\n".join(warnings)
            outputs[command.split(" -")[0]] = result.stdout
    finally:
        server_err = []
        for process in background:
            process.send_signal(signal.SIGTERM)
            try:
                _, err = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            server_err.append(err)

    # What the page promises each step shows.
    assert "model iris: registered v1" in outputs["mlcd run"]
    assert "PASSED" in outputs["mlcd evaluate iris"]
    assert "iris@champion: unset → 1" in outputs["mlcd models promote iris 1"]
    curl = next(v for k, v in outputs.items() if k.startswith("curl"))
    assert '"model":"iris","version":1' in curl and '"predictions":[' in curl
    assert "not enough data" in outputs["mlcd monitor iris"]
    assert (project / "data" / "iris.csv.mlcd").is_file()
    assert len(server_err) == 1
    assert "serving iris/1" in server_err[0]
    assert not [line for line in server_err[0].splitlines() if WARNING.search(line)], server_err[0]
