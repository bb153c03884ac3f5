"""Two runs at once, and a run killed mid-stage: nothing is corrupted, nothing runs twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlalchemy import select

from mlcd.store.tables import runs
from tests.pipeline.conftest import calls, outcomes, run_json, stage_env


def _start(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", *args],
        cwd=root,
        env={**os.environ, **stage_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_concurrent_lock_updates_keep_every_stage(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from mlcd.pipeline.lockfile import LockEntry, update_lock; "
        "root = Path(sys.argv[1]); name = sys.argv[2]; "
        "[update_lock(root, {f'{name}{i}': LockEntry('0' * 64, 'cmd')}, [], root / '.mlcd') "
        "for i in range(15)]"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"w{n}-"]) for n in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0

    stages = yaml.safe_load((tmp_path / "mlcd.lock").read_text())["stages"]
    assert len(stages) == 60


def test_two_runs_of_the_same_stage_run_it_once(make_project) -> None:
    root = make_project(
        """
        stages:
          slow:
            cmd: echo slow >> calls.log && for i in $(seq 2400); do test -f ../release && break; sleep 0.05; done && echo done > out.txt
            outs: [out.txt]
        """
    )

    first = _start(root, "run", "--json")
    _wait_for(root / "calls.log")
    # The stage runs until the second run says it waits (not for a fixed time that a busy
    # machine could outlast before the second run even starts).
    errors = root.parent / "second.err"
    with errors.open("w") as sink:
        second = subprocess.Popen(
            [sys.executable, "-m", "mlcd.cli.main", "run", "--json"],
            cwd=root,
            env={**os.environ, **stage_env(), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    deadline = time.monotonic() + 120
    while "waiting for" not in errors.read_text() and second.poll() is None:
        assert time.monotonic() < deadline, "the second run never waited"
        time.sleep(0.05)
    (root.parent / "release").touch()
    results = [p.communicate(timeout=120) for p in (first, second)]
    results[1] = (results[1][0], errors.read_text())

    assert first.returncode == 0 and second.returncode == 0, results
    assert calls(root) == ["slow"]
    waited = json.loads(results[1][0])
    assert outcomes(waited) == {"slow": "skipped"}
    assert "waiting for 'out.txt', held by mlcd run (pid" in results[1][1]


def test_independent_stages_of_two_runs_proceed_side_by_side(make_project) -> None:
    # Each stage finishes only once the other has started: a run-wide lock would deadlock it.
    wait_for = "for i in $(seq 300); do test -f {other}.started && break; sleep 0.1; done"
    root = make_project(
        f"""
        stages:
          x:
            cmd: touch x.started; {wait_for.format(other="y")}; test -f y.started && echo x > x.txt
            outs: [x.txt]
          y:
            cmd: touch y.started; {wait_for.format(other="x")}; test -f x.started && echo y > y.txt
            outs: [y.txt]
        """
    )

    runs = [_start(root, "run", "x"), _start(root, "run", "y")]
    results = [p.communicate(timeout=120) for p in runs]

    assert [p.returncode for p in runs] == [0, 0], results
    assert (root / "x.txt").read_text() == "x\n"
    assert (root / "y.txt").read_text() == "y\n"


def test_sigkill_mid_stage_leaves_a_state_the_next_run_completes(
    make_project, mlcd, open_store
) -> None:
    root = make_project(
        """
        stages:
          first:
            cmd: echo first >> calls.log && echo one > one.txt
            outs: [one.txt]
          slow:
            cmd: echo slow >> calls.log && echo partial > two.txt && touch started && sleep 3 && echo whole > two.txt
            deps: [one.txt]
            outs: [two.txt]
          last:
            cmd: echo last >> calls.log && cat one.txt two.txt > three.txt
            deps: [one.txt, two.txt]
            outs: [three.txt]
        """
    )
    victim = _start(root, "run")
    _wait_for(root / "started")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    lock = yaml.safe_load((root / "mlcd.lock").read_text())
    assert set(lock["stages"]) == {"first"}  # slow never finished: not recorded

    # The orphaned command still holds two.txt's lock: this run waits for it, then redoes it.
    result = mlcd(root, "run", "--json")

    assert result.returncode == 0, result.stderr
    assert outcomes(json.loads(result.stdout)) == {"first": "skipped", "slow": "ran", "last": "ran"}
    assert (root / "three.txt").read_text() == "one\nwhole\n"
    assert json.loads(mlcd(root, "status", "--json").stdout)["up_to_date"] is True
    assert calls(root) == ["first", "slow", "slow", "last"]
    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    with store.read() as conn:
        statuses = sorted(conn.execute(select(runs.c.status)).scalars())
    assert statuses == ["finished", "killed"]  # the killed run is found and marked


def test_run_interrupted_by_sigterm_stops_its_commands_and_is_marked_killed(
    make_project, open_store
) -> None:
    root = make_project(
        """
        stages:
          slow:
            cmd: touch started && sleep 60 && echo never > out.txt
            outs: [out.txt]
        """
    )
    victim = _start(root, "run")
    _wait_for(root / "started")
    os.kill(victim.pid, signal.SIGTERM)
    victim.communicate(timeout=30)

    assert victim.returncode == 130
    assert not (root / "out.txt").exists()
    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    with store.read() as conn:
        rows = conn.execute(select(runs.c.kind, runs.c.status)).all()
    assert [tuple(r) for r in rows] == [("pipeline", "killed")]


def test_runs_record_nothing_of_a_stage_still_running_elsewhere(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          slow:
            cmd: echo slow >> calls.log && touch started && sleep 2 && echo done > out.txt
            outs: [out.txt]
        """
    )
    first = _start(root, "run")
    _wait_for(root / "started")

    status = mlcd(root, "status", "--json")
    first.communicate(timeout=60)

    assert json.loads(status.stdout)["up_to_date"] is False
    assert run_json(mlcd, root)["run_id"] is None
