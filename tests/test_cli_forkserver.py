"""The suite's CLI fork server answers as a new interpreter would: same output, exit status,
working folder, environment; a timeout raises as ``subprocess.run`` does; a killed command
reports its signal."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests import cli_forkserver
from tests.conftest import run_cli, run_python


def _plain(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The same command in a new interpreter (``run_cli``'s way without the server)."""
    return run_cli(args, cwd=cwd, env={**env, "MLCD_TEST_CLI_FORK": "0"}, inherit=False)


def test_a_forked_command_answers_as_a_new_interpreter(project: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
    server = cli_forkserver.server()
    for args in (["--help"], ["status", "--json"], ["runs", "list"], ["no-such-command"]):
        forked = server.run(args, cwd=project, env=env, timeout=120)
        plain = _plain(args, project, env)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            plain.returncode,
            plain.stdout,
            plain.stderr,
        ), args
        assert forked.args == plain.args
    assert server.run(["no-such-command"], cwd=project, env=env, timeout=120).returncode == 2


def test_the_command_sees_the_tests_environment_and_folder(project: Path) -> None:
    # a store URL given only in this command's environment reaches it
    env = {**os.environ, "MLCD_STORE": "bogus://x"}
    assert cli_forkserver.forkable(env)
    server = cli_forkserver.server()
    result = server.run(["runs", "list"], cwd=project, env=env, timeout=120)
    assert result.returncode == 2 and "unsupported store URL 'bogus://x'" in result.stderr
    # and its working folder: outside the project it is not in one
    outside = server.run(["runs", "list"], cwd=project.parent, env=dict(os.environ), timeout=120)
    assert outside.returncode == 2 and "mlcd init" in outside.stderr


def test_start_up_settings_need_their_own_interpreter() -> None:
    assert not cli_forkserver.forkable({**os.environ, "PYTHONPATH": "/elsewhere"})
    assert not cli_forkserver.forkable({**os.environ, "OMP_NUM_THREADS": "7"})
    assert cli_forkserver.forkable({**os.environ, "PYTHONUNBUFFERED": "1", "MLCD_X": "1"})


def test_a_timeout_raises_and_a_killed_command_reports_its_signal(project: Path) -> None:
    server = cli_forkserver.server()
    env = {**os.environ}
    # 'mlcd ui' serves until stopped: the timeout must kill it and raise like subprocess.run
    with pytest.raises(subprocess.TimeoutExpired):
        server.run(["ui", "--port", "0"], cwd=project, env=env, timeout=3)

    pids: list[int] = []
    result: list[subprocess.CompletedProcess[str]] = []
    started = threading.Event()

    original = cli_forkserver._recv_msg

    def spy(conn: object) -> tuple[dict[str, object], list[int]]:
        message = original(conn)  # type: ignore[arg-type]
        if "pid" in message[0]:
            pids.append(int(message[0]["pid"]))  # type: ignore[call-overload]
            started.set()
        return message

    cli_forkserver._recv_msg = spy  # type: ignore[assignment]
    try:
        runner = threading.Thread(
            target=lambda: result.append(
                server.run(["ui", "--port", "0"], cwd=project, env=env, timeout=120)
            )
        )
        runner.start()
        assert started.wait(60)
        os.kill(pids[0], signal.SIGKILL)
        runner.join(60)
    finally:
        cli_forkserver._recv_msg = original
    assert result and result[0].returncode == -signal.SIGKILL


_SNIPPET = """
import os, sys
print(sys.argv, os.getcwd(), os.environ.get("MLCD_SNIPPET"), __name__)
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def test_python_code_runs_as_python_c_would(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLCD_SNIPPET": "seen"}
    for code in ("0", "3"):
        forked = run_python(_SNIPPET, [code, "x y"], tmp_path, env, inherit=False)
        plain = run_python(
            _SNIPPET, [code, "x y"], tmp_path, {**env, "MLCD_TEST_CLI_FORK": "0"}, inherit=False
        )
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            plain.returncode,
            plain.stdout,
            plain.stderr,
        )
        assert forked.returncode == int(code)
        assert forked.stdout == f"['-c', '{code}', 'x y'] {tmp_path} seen __main__\n"
    # an exception is a traceback on stderr and exit status 1, as in a new interpreter
    failed = run_python("raise ValueError('no')", [], tmp_path)
    assert failed.returncode == 1 and "ValueError: no" in failed.stderr
