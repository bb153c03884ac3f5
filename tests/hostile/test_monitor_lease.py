"""A monitor killed or hung while joining labels does not block the next ``mlcd monitor``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcd.errors import MonitorError
from mlcd.monitor.lease import join_lease
from mlcd.objects import LocalObjectStore
from mlcd.store import Store, locks, models
from tests.conftest import run_cli
from tests.monitor.conftest import PredictionLogDir, frame

LEASE = "monitor.performance.churn"


def _labelled_project(project: Path, store: Store) -> None:
    """``churn`` version 1 as champion, 600 logged predictions and 300 labels."""
    from mlcd.monitor.profile import compute_reference_profile

    reference = frame(1000, 1, columns=3)
    reference["prediction"] = (reference["x0"] > 0).astype(int)
    digest = compute_reference_profile(reference, LocalObjectStore(project / ".mlcd" / "objects"))

    def work(conn) -> None:  # type: ignore[no-untyped-def]
        models.ensure_model(conn, "churn")
        models.insert_version(conn, "churn", 1, digest="c" * 64, reference_digest=str(digest))
        models.set_alias(conn, "churn", "champion", 1)

    store.transact(work)
    now = time.time()
    current = frame(600, 2, columns=3)
    current["prediction"] = (current["x0"] > 0).astype(int)
    current["ts"] = now - 1200 + np.arange(600)
    current["request_id"] = [f"q{i}" for i in range(600)]
    log = PredictionLogDir(project, store)
    log.write("churn", 1, current)
    labels = dict(
        zip(current["request_id"][:300], current["prediction"][:300].tolist(), strict=True)
    )
    log.feedback("churn", labels, now - 60)


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from mlcd.monitor.lease import join_lease
    from mlcd.store import Store

    store = Store(sys.argv[1])
    with join_lease(store, "churn", wait_s=0):
        print("holding", flush=True)
        time.sleep(600)
    """
)


@pytest.fixture
def holder(project: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[str]]]:
    """Start a real process that takes the label-join lease of ``churn`` and keeps it."""
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[str]:
        url = f"sqlite:///{project / '.mlcd' / 'mlcd.db'}"
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, url],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "holding"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def _held_by(store: Store) -> str | None:
    with store.read() as conn:
        row = locks.holder(conn, LEASE)
    return str(row["owner"]) if row else None


def test_monitor_runs_after_a_monitor_holding_the_join_lease_is_killed(
    project: Path,
    open_store: Callable[..., Store],
    holder: Callable[[dict[str, str]], subprocess.Popen[str]],
) -> None:
    # Guards against a killed `mlcd monitor` leaving its label-join lease behind so every
    # later run refuses (issue 20, item 3).
    store = open_store(f"sqlite:///{project / '.mlcd' / 'mlcd.db'}")
    _labelled_project(project, store)
    process = holder({})
    assert (_held_by(store) or "").startswith(f"{socket.gethostname()}:{process.pid}:")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert _held_by(store) is not None  # the killed process could not release it

    result = run_cli(["monitor", "churn@champion", "--since", "1h", "--json"], cwd=project)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["performance"]["labels"] == 300
    assert "another process is joining labels" not in result.stderr
    assert _held_by(store) is None  # released by the run that took it over


def test_a_hung_holder_keeps_the_lease_while_renewing_and_loses_it_when_frozen(
    project: Path,
    open_store: Callable[..., Store],
    holder: Callable[[dict[str, str]], subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Guards against a lease that outlives a holder that stopped working (a frozen process, or
    # one on another machine that cannot be checked): it expires when it is not renewed.
    store = open_store(f"sqlite:///{project / '.mlcd' / 'mlcd.db'}")
    _labelled_project(project, store)
    monkeypatch.setenv("MLCD_MONITOR_LEASE_S", "1")
    process = holder({"MLCD_MONITOR_LEASE_S": "1"})
    # Alive and renewing: still its lease after three of its lifetimes.
    with (
        pytest.raises(MonitorError, match="another process is joining labels") as info,
        join_lease(store, "churn", wait_s=3),
    ):
        pass
    assert str(process.pid) in info.value.message
    process.send_signal(signal.SIGSTOP)  # frozen: alive, but no longer renewing
    with join_lease(store, "churn", wait_s=30):
        assert _held_by(store) == f"{locks.owner_id()}:{id(store)}"
    process.send_signal(signal.SIGKILL)
