"""Shared fixtures: real SQLite files, real PostgreSQL databases, real CLI subprocesses.

The suite runs in parallel under pytest-xdist (``make test``): every fixture here gives each test
its own folder (``tmp_path``), its own PostgreSQL database and free ports, so tests never share
state across workers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import cli_forkserver, lanes

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

# One BLAS/OpenMP thread per process: the xdist workers and the CLI subprocesses they start
# already share the machine's cores, and OpenBLAS threads spinning on a busy machine made one
# small LogisticRegression fit 10x slower. Set before numpy is imported; the shell can override.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def worker_id() -> str:
    """The xdist worker running this process (``gw0``, ``gw1``...), ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _require_pg() -> None:
    if not _pg_reachable():
        if os.environ.get("MLCD_REQUIRE_POSTGRES") or os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI but is not answering")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not answering")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for this test, dropped afterwards.

    Named after the xdist worker (``mlcd_t_gw0_...``) plus a random part, because other test
    sessions (other developers, other CI jobs) may share the same server at the same time.
    """
    _require_pg()
    import psycopg

    name = f"mlcd_t_{worker_id()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _fresh_s3_clients() -> Iterator[None]:
    """Forget s3fs's cached filesystems after each test: they keep the endpoint of the moto
    server they were made for (AWS_ENDPOINT_URL is not part of their cache key), and a later
    test in the same worker talks to another server."""
    yield
    s3fs = sys.modules.get("s3fs")
    if s3fs is not None:
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port for the session (one per xdist worker); each
    test makes its own bucket."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite store file in the test's folder."""
    return f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def _init_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``mlcd init`` makes, made once per session (per xdist worker) by the real CLI."""
    base = tmp_path_factory.mktemp("init-template")
    result = run_cli(["init", str(base / "proj")], cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "proj"


@pytest.fixture
def project(tmp_path: Path, _init_template: Path) -> Path:
    """A fresh project made by ``mlcd init``: a copy of the session's (init writes no absolute
    path, so the copy is what init would make here, without a CLI start per test)."""
    return copy_project(_init_template, tmp_path)


def copy_project(template: Path, folder: Path) -> Path:
    """A copy of the prepared project ``template`` as ``folder/proj`` (git, .mlcd and all)."""
    root = folder / "proj"
    shutil.copytree(template, root, symlinks=True)
    return root


def prepared_project(
    init_template: Path,
    factory: pytest.TempPathFactory,
    label: str,
    prepare: Any,
) -> Path:
    """An ``mlcd init`` project that ``prepare(root)`` set up, for a module- or session-scoped
    fixture to make once and tests to take a :func:`copy_project` of."""
    root = copy_project(init_template, factory.mktemp(label))
    prepare(root)
    return root


def run_cli(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    *,
    inherit: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``mlcd`` CLI in a subprocess: forked from a process that has the
    third-party libraries imported (:mod:`tests.cli_forkserver`), or a new interpreter when the
    environment asks for different start-up settings or ``MLCD_TEST_CLI_FORK=0``.

    ``env`` is added to this process's environment, or (``inherit=False``) is the whole of it.
    """
    return _run_new_process(None, args, cwd, env, timeout, inherit)


def run_python(
    code: str,
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    *,
    inherit: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` in a new process, as :func:`run_cli` runs the CLI (forked from
    the fork server when the environment allows); safe to call from several threads at once."""
    return _run_new_process(code, args, cwd, env, timeout, inherit)


def _run_new_process(
    code: str | None,
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None,
    timeout: float,
    inherit: bool,
) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` (or, without ``code``, ``python -m mlcd.cli.main ARGS``)."""
    base = os.environ if inherit else {}
    full_env = {**base, "PYTHONUNBUFFERED": "1", **(env or {})}
    if cli_forkserver.forkable(full_env):
        return cli_forkserver.server().run(args, cwd=cwd, env=full_env, timeout=timeout, code=code)
    return subprocess.run(
        cli_forkserver.argv(args, code),
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def open_store() -> Iterator[object]:
    """A factory of stores that are all disposed of when the test ends."""
    from mlcd.store import Store

    opened: list[Store] = []

    def factory(url: str, **kwargs: object) -> Store:
        store = Store(url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.dispose()


#: How long each test took in the last full run (``make durations`` rewrites it, merging in
#: what a partial run measured). It orders the work longest first, and a test that took more
#: than SLOW_AFTER_S there counts as slow: ``make test-fast`` skips it.
DURATIONS_FILE = Path(__file__).with_name("durations.json")
SLOW_AFTER_S = 1.5
#: CPU seconds each test used in that run (its worker, its children, the fork server's
#: commands for it): what tells a test that mostly waits (:mod:`tests.lanes`).
CPU_FILE = DURATIONS_FILE.with_name("cpu.json")
#: The Ray group goes first even when its recorded total is not the largest: its cluster users
#: back to back, so the two-node cluster starts once and is stopped before the rest piles up.
_FIRST_GROUPS = ("ray",)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"write each test's duration into {DURATIONS_FILE.name} (merged with what is there)",
    )


def _plain_nodeid(nodeid: str) -> str:
    """The node id without the ``@group`` suffix that ``--dist loadgroup`` adds."""
    head, at, tail = nodeid.rpartition("@")
    return head if at and "::" in head and not any(c in tail for c in "[]:/") else nodeid


def _recorded_durations() -> dict[str, float]:
    import json

    try:
        return dict(json.loads(DURATIONS_FILE.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _xdist_groups(item: pytest.Item) -> list[str]:
    return sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )


def _tag_xdist_group(item: pytest.Item, groups: list[str]) -> None:
    """Give the test its ``@group`` nodeid suffix, which is how ``--dist loadgroup`` keeps a
    group on one worker. pytest-xdist sets ``item._nodeid``, which pytest 9.2 no longer reads
    (its nodeid comes from ``item._id``): without this every group was spread over both
    workers (two Ray clusters, two CPU hogs at once)."""
    suffix = "@" + "_".join(groups)
    if item.nodeid.endswith(suffix) or not hasattr(item, "_id"):
        return
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(item.nodeid + suffix)


def _recorded_cpu() -> dict[str, float]:
    import json

    try:
        return dict(json.loads(CPU_FILE.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core, and the waiting lane (:mod:`tests.lanes`)."""
    return lanes.cores() + 1


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    wall, cpu = _recorded_durations(), _recorded_cpu()

    def classify(nodeids: list[str], scope_of: Any) -> set[str]:
        # PostgreSQL's CPU is in its server's processes, which the record does not see
        seen = [nodeid for nodeid in nodeids if "postgres" not in nodeid and "_pg" not in nodeid]
        found = lanes.waiting_units(seen, scope_of, _plain_nodeid, wall, cpu)
        # nor the Ray group's: its cluster's daemons use about a core (process accounting)
        unseen = {scope_of(nodeid) for nodeid in nodeids if nodeid not in seen}
        return found - unseen - set(_FIRST_GROUPS)

    return lanes.LaneScheduling(config, log, classify=classify)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark as slow the tests that took more than SLOW_AFTER_S in the recorded run, or whose
    xdist group did (before ``-m "not slow"`` deselects), and, on xdist workers, tag grouped
    tests for --dist loadgroup and hand the work out longest first (by file or group), so no
    long test starts last and runs alone at the end."""
    recorded = _recorded_durations()
    took = {item.nodeid: recorded.get(_plain_nodeid(item.nodeid), 0.0) for item in items}
    groups = {item.nodeid: _xdist_groups(item) for item in items}
    group_total: dict[str, float] = {}
    for item in items:
        for group in groups[item.nodeid]:
            group_total[group] = group_total.get(group, 0.0) + took[item.nodeid]
    for item in items:
        # a group shares a costly fixture (a browser, a cluster): its first test would pay it
        slow = max([took[item.nodeid], *(group_total[g] for g in groups[item.nodeid])])
        if slow > SLOW_AFTER_S and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    loadgroup = bool(getattr(config.option, "loadgroup", False))
    # A test file's tests stay together (its module-scoped fixtures are built once per
    # worker, not again each time the order comes back to the file): files and groups are
    # ordered by their summed time, tests within them keep their file order.
    file_total: dict[str, float] = {}
    for item in items:
        if not groups[item.nodeid]:
            path = item.nodeid.split("::")[0]
            file_total[path] = file_total.get(path, 0.0) + took[item.nodeid]
    keys: dict[str, tuple[int, float, str]] = {}
    for item in items:
        mine = groups[item.nodeid]
        if any(group in _FIRST_GROUPS for group in mine):
            first = 0 if "ray_cluster" in getattr(item, "fixturenames", ()) else 1
            keys[item.nodeid] = (first, 0.0, "")
        elif mine:
            keys[item.nodeid] = (2, -max(group_total[g] for g in mine), "@".join(mine))
        else:
            path = item.nodeid.split("::")[0]
            keys[item.nodeid] = (2, -file_total[path], path)
    rank = {id(item): (*keys[item.nodeid], index) for index, item in enumerate(items)}
    if loadgroup:
        for item in items:
            if groups[item.nodeid]:
                _tag_xdist_group(item, groups[item.nodeid])
    items.sort(key=lambda item: rank[id(item)])


_measured: dict[str, float] = {}
_measured_cpu: dict[str, float] = {}
_cpu_at_setup: dict[str, float] = {}


def _descendants_cpu() -> float:
    """CPU seconds of this process's live descendants and of what they have reaped (a
    browser, a Ray cluster, a multiprocessing server that outlive one test), from /proc."""
    children: dict[int, list[int]] = {}
    used: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        used[int(entry.name)] = sum(int(value) for value in fields[11:15])  # u+s, children's
    pending, total = list(children.get(os.getpid(), [])), 0
    while pending:
        pid = pending.pop()
        total += used[pid]
        pending.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_now() -> float:
    """CPU seconds of this worker, its reaped children, the fork server's commands and its
    live descendants."""
    times = os.times()
    return (
        times.user + times.system + times.children_user + times.children_system
        + cli_forkserver.child_cpu + _descendants_cpu()
    )  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.config.getoption("--store-durations"):  # a walk of /proc: only when recording
        _cpu_at_setup[item.nodeid] = _cpu_now()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """With --store-durations, the teardown report carries the CPU the test used from setup
    to teardown (to the controller too, through ``user_properties``)."""
    report = yield
    if call.when == "teardown" and item.nodeid in _cpu_at_setup:
        used = _cpu_now() - _cpu_at_setup.pop(item.nodeid)
        if used >= 0:  # below 0: a descendant ended unreaped (its CPU left the count)
            report.user_properties.append(("cpu_s", round(used, 2)))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _measured[_plain_nodeid(report.nodeid)] = (
        _measured.get(_plain_nodeid(report.nodeid), 0.0) + report.duration
    )
    for key, value in report.user_properties:
        if key == "cpu_s" and isinstance(value, (int, float)):
            _measured_cpu[_plain_nodeid(report.nodeid)] = float(value)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With --store-durations, on the controller: merge this run's durations into the file."""
    config = session.config
    if not config.getoption("--store-durations") or hasattr(config, "workerinput"):
        return
    import json

    merged = {**_recorded_durations(), **{k: round(v, 2) for k, v in _measured.items()}}
    DURATIONS_FILE.write_text(
        json.dumps(dict(sorted(merged.items())), indent=0) + "\n", encoding="utf-8"
    )
    cpu = {**_recorded_cpu(), **_measured_cpu}
    CPU_FILE.write_text(json.dumps(dict(sorted(cpu.items())), indent=0) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int) -> None:
    """Say loudly when nothing ran: exit code 5 fails ``make test``, and this says why."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        terminalreporter.write_line(
            "no tests were collected or selected: check the paths, -k and -m arguments",
            red=True,
        )
