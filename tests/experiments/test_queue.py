"""The experiment queue through the real CLI: ``exp run --queue``, ``exp start -j N`` with real
worker processes, ``exp queue list|logs|kill|remove``, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcd.project import Project
from mlcd.store import Store, queue
from mlcd.store.tables import runs as runs_table
from tests.experiments.conftest import FILES, calls, env_for, git
from tests.pipeline.conftest import Cli

# train.py of the conftest's project, but a run whose lr is $HOLD_LR writes $HOLD_DIR/started
# and waits for $HOLD_DIR/release: a worker can be killed while it is inside an experiment.
HOLDING_TRAIN = """
import json, os, time, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
hold = os.environ.get("HOLD_DIR")
if hold and str(lr) == os.environ.get("HOLD_LR"):
    open(os.path.join(hold, "started"), "a").write(f"{os.getpid()}\\n")
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(hold, "release")) and time.time() < deadline:
        time.sleep(0.05)
data = open("prepared.txt").read()
open("model.txt", "w").write(f"model lr={lr} size={len(data)}\\n")
json.dump({"score": lr * 10, "size": len(data)}, open("metrics.json", "w"))
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The stage commands' environment, with ``MLCD_STORE`` on PostgreSQL."""
    env = env_for(tmp_path)
    if request.param == "postgresql":
        env["MLCD_STORE"] = str(request.getfixturevalue("pg_url"))
    return env


def _ok(mlcd: Cli, root: Path, env: dict[str, str], *args: str) -> Any:
    result = mlcd(root, "exp", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _store(root: Path, env: dict[str, str]) -> Store:
    url = env.get("MLCD_STORE") or f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"
    return Store(url, root=root)


def test_queue_of_six_with_two_workers_runs_each_exactly_once(
    committed_for: Callable[..., Path], mlcd: Cli, tmp_path: Path, store_env: dict[str, str]
) -> None:
    root = committed_for(store_env, {**FILES, "train.py": HOLDING_TRAIN})
    lrs = [0.11, 0.22, 0.33, 0.44, 0.55, 0.66]
    queued = [
        _ok(mlcd, root, store_env, "run", "-S", f"train.lr={lr}", "-n", f"q{i}", "--queue")
        for i, lr in enumerate(lrs)
    ]
    assert [q["status"] for q in queued] == ["queued"] * 6
    assert calls(tmp_path) == []  # queued, not run
    listed = _ok(mlcd, root, store_env, "queue", "list")
    assert [e["name"] for e in listed] == [f"q{i}" for i in range(6)]
    assert listed[0]["base"] == git(root, "rev-parse", "HEAD").strip()

    done = _ok(mlcd, root, store_env, "start", "-j", "2")

    assert done["workers"] == 2 and done["counts"] == {"done": 6}
    assert all(e["attempts"] == 1 for e in done["entries"])
    assert Counter(calls(tmp_path)) == {"train": 6}  # prepare restored from the run cache
    assert len({e["run_id"] for e in done["entries"]}) == 6
    assert len({e["worker"] for e in done["entries"]}) == 2  # both workers took some
    store = _store(root, store_env)
    try:
        with store.read() as conn:
            from mlcd.store import runs

            scores = sorted(
                runs.latest_metrics_of(conn, e["run_id"])["score"] for e in done["entries"]
            )
            tags = runs.tags_of(conn, done["entries"][0]["run_id"])
    finally:
        store.dispose()
    assert scores == pytest.approx([lr * 10 for lr in lrs])
    assert tags["mlcd.exp"] == "1" and tags["mlcd.exp.name"] == "q0"
    log = _ok(mlcd, root, store_env, "queue", "logs", "q3")["log"]
    assert "train: ran" in log and "--- done" in log
    assert git(root, "status", "--porcelain") == ""
    assert _ok(mlcd, root, store_env, "queue", "list") == []  # nothing queued or running
    shown = _ok(mlcd, root, store_env, "show")
    assert {e["name"] for e in shown["experiments"]} == {f"q{i}" for i in range(6)}


def _wait_for(condition: Callable[[], Any], what: str, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkilled_worker_experiment_is_requeued_once_and_the_rest_finish(
    committed_for: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env, {**FILES, "train.py": HOLDING_TRAIN})
    hold = tmp_path / "hold"
    hold.mkdir()
    env = {**env, "HOLD_DIR": str(hold), "HOLD_LR": "0.7"}
    for name, lr in (("held", 0.7), ("b", 0.2), ("c", 0.3)):
        _ok(mlcd, root, env, "run", "-S", f"train.lr={lr}", "-n", name, "--queue")
    start = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "exp", "start", "-j", "2", "--json"],
        cwd=root,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: (hold / "started").exists(), "the held experiment to start")
        store = _store(root, env)
        try:
            with store.read() as conn:
                held = queue.get(conn, "held")
        finally:
            store.dispose()
        assert held["status"] == "running" and held["attempts"] == 1
        worker_pid = int(held["worker"].rsplit(":", 1)[1])
        os.kill(worker_pid, signal.SIGKILL)
        (hold / "release").touch()  # the orphaned stage command and the second attempt go on
        out, err = start.communicate(timeout=300)
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
    assert start.returncode == 0, err
    done = json.loads(out)
    by_name = {e["name"]: e for e in done["entries"]}
    assert {n: e["status"] for n, e in by_name.items()} == {
        "held": "done",
        "b": "done",
        "c": "done",
    }
    assert by_name["held"]["attempts"] == 2
    assert f":{worker_pid}" not in by_name["held"]["worker"]
    assert by_name["b"]["attempts"] == by_name["c"]["attempts"] == 1
    log = _ok(mlcd, root, env, "queue", "logs", "held")["log"]
    assert "attempt 1" in log and "attempt 2" in log and "--- done" in log
    store = _store(root, env)
    try:
        with store.read() as conn:
            from sqlalchemy import select

            statuses = Counter(
                conn.execute(
                    select(runs_table.c.status).where(runs_table.c.kind == "pipeline")
                ).scalars()
            )
    finally:
        store.dispose()
    # the baseline, three experiments, and the killed worker's run, marked killed
    assert statuses == {"finished": 4, "killed": 1}
    assert not [p for p in (root / ".mlcd" / "exp").iterdir() if p.name != "logs"]


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_recover_requeues_a_dead_workers_entry_once_then_fails_it(
    store_url: str, open_store: Callable[..., Store]
) -> None:
    import socket

    store = open_store(store_url)
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    entry_id = store.transact(lambda c: queue.enqueue(c, name="x", settings=["train.lr=1"]))
    store.transact(lambda c: queue.enqueue(c, name="y", settings=[]))

    claimed = store.transact(lambda c: queue.claim(c, dead))
    assert claimed is not None and claimed["id"] == entry_id and claimed["attempts"] == 1
    assert store.transact(lambda c: queue.recover(c, stale_s=3600))[0]["status"] == "queued"
    again = store.transact(lambda c: queue.claim(c, dead))
    assert again is not None and again["id"] == entry_id and again["attempts"] == 2
    assert store.transact(lambda c: queue.recover(c, stale_s=3600))[0]["status"] == "failed"
    with store.read() as conn:
        failed = queue.get(conn, entry_id)
    assert failed["status"] == "failed" and "died" in failed["error"]
    # a live worker's entry is left alone, however old its heartbeat, until it goes stale
    live = f"{socket.gethostname()}:{os.getpid()}"
    assert store.transact(lambda c: queue.claim(c, live))["name"] == "y"
    assert store.transact(lambda c: queue.recover(c, stale_s=3600)) == []
    assert store.transact(lambda c: queue.heartbeat(c, again["id"], dead)) is None


def test_claim_from_many_processes_gives_each_entry_once(
    store_url: str, open_store: Callable[..., Store], tmp_path: Path
) -> None:
    store = open_store(store_url)
    for i in range(40):
        store.transact(lambda c, i=i: queue.enqueue(c, name=f"e{i}", settings=[]))
    script = (
        "import sys, json\n"
        "from mlcd.store import Store, queue\n"
        "store = Store(sys.argv[1])\n"
        "got = []\n"
        "while (e := store.transact(lambda c: queue.claim(c, 'w' + sys.argv[2]))):\n"
        "    got.append(e['name'])\n"
        "print(json.dumps(got))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url, str(n)], stdout=subprocess.PIPE, text=True
        )
        for n in range(4)
    ]
    taken = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    names = [n for got in taken for n in got]
    assert sorted(names) == sorted(f"e{i}" for i in range(40))  # each once, none lost


def test_queue_kill_remove_and_unhappy_paths(
    committed_for: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env, {**FILES, "train.py": HOLDING_TRAIN})

    empty = mlcd(root, "exp", "start", "-j", "2", env=env)
    assert empty.returncode == 2 and "the queue is empty" in empty.stderr

    unknown = mlcd(root, "exp", "queue", "kill", "nosuchid", env=env)
    assert unknown.returncode == 3 and "no queued experiment 'nosuchid'" in unknown.stderr
    assert "mlcd exp queue list" in unknown.stderr

    bad = mlcd(root, "exp", "run", "-S", "train.lr", "--queue", env=env)
    assert bad.returncode == 2 and "expected [FILE:]KEY=VALUE" in bad.stderr

    first = _ok(mlcd, root, env, "run", "-S", "train.lr=0.9", "-n", "one", "--queue")
    taken = mlcd(root, "exp", "run", "-S", "train.lr=0.8", "-n", "one", "--queue", env=env)
    assert taken.returncode == 2 and "exists already" in taken.stderr
    _ok(mlcd, root, env, "run", "-S", "train.lr=0.8", "-n", "two", "--queue")

    killed = _ok(mlcd, root, env, "queue", "kill", first["id"][:8])
    assert killed["status"] == "killed"
    again = mlcd(root, "exp", "queue", "kill", "one", env=env)
    assert again.returncode == 2 and "killed already" in again.stderr
    nolog = mlcd(root, "exp", "queue", "logs", "two", env=env)
    assert nolog.returncode == 3 and "has no log yet" in nolog.stderr

    assert [e["name"] for e in _ok(mlcd, root, env, "queue", "list")] == ["two"]
    assert {e["name"] for e in _ok(mlcd, root, env, "queue", "list", "--all")} == {"one", "two"}
    removed = _ok(mlcd, root, env, "queue", "remove", "--all")
    assert {e["name"] for e in removed} == {"one", "two"}
    assert _ok(mlcd, root, env, "queue", "list", "--all") == []
    assert calls(tmp_path) == []  # nothing ran
    with Project.open(root) as project, project.store.read() as conn:
        assert queue.entries(conn) == []


def test_kill_of_a_running_experiment_stops_it_and_the_worker_goes_on(
    committed_for: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env, {**FILES, "train.py": HOLDING_TRAIN})
    hold = tmp_path / "hold"
    hold.mkdir()
    env = {**env, "HOLD_DIR": str(hold), "HOLD_LR": "0.7"}
    _ok(mlcd, root, env, "run", "-S", "train.lr=0.7", "-n", "held", "--queue")
    _ok(mlcd, root, env, "run", "-S", "train.lr=0.2", "-n", "after", "--queue")
    start = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "exp", "start", "-j", "1", "--json"],
        cwd=root,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: (hold / "started").exists(), "the held experiment to start")
        asked = _ok(mlcd, root, env, "queue", "kill", "held")
        assert asked["kill_requested"] and asked["status"] == "running"
        out, err = start.communicate(timeout=300)  # never released: only the kill ends it
    finally:
        (hold / "release").touch()
        if start.poll() is None:
            start.kill()
            start.wait()
    assert start.returncode == 0, err
    by_name = {e["name"]: e for e in json.loads(out)["entries"]}
    assert by_name["held"]["status"] == "killed" and by_name["held"]["attempts"] == 1
    assert by_name["held"]["error"] == "kill requested"
    assert by_name["after"]["status"] == "done"
    assert "--- killed: kill requested" in _ok(mlcd, root, env, "queue", "logs", "held")["log"]
    store = _store(root, env)
    try:
        with store.read() as conn:
            from sqlalchemy import select

            statuses = Counter(
                conn.execute(
                    select(runs_table.c.status).where(runs_table.c.kind == "pipeline")
                ).scalars()
            )
    finally:
        store.dispose()
    assert statuses == {"finished": 2, "killed": 1}  # the baseline, 'after'; 'held' killed
