"""The suite's waiting lane (:mod:`tests.lanes`): which work units count as waiting, and that
the lane worker gets only those while the others get the rest first, with pytest-xdist's own
``--dist loadgroup`` scheduler underneath (its worker controllers stood in for by nodes that
record what they were sent, as pytest-xdist's own scheduler tests do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from types import SimpleNamespace

import pytest

from tests import lanes
from tests.conftest import _plain_nodeid


def test_a_unit_waits_when_its_recorded_cpu_is_a_small_share_of_its_time() -> None:
    nodeids = ["t.py::sleeps", "t.py::computes", "t.py::new", "t.py::quick",
               "u.py::a@grp", "u.py::b@grp", "v.py::c@mixed", "v.py::d@mixed"]  # fmt: skip
    wall = {"t.py::sleeps": 10.0, "t.py::computes": 10.0, "t.py::quick": 0.2,
            "u.py::a": 3.0, "u.py::b": 3.0, "v.py::c": 3.0, "v.py::d": 3.0}  # fmt: skip
    cpu = {"t.py::sleeps": 0.5, "t.py::computes": 9.0, "t.py::quick": 0.0,
           "u.py::a": 0.1, "u.py::b": 0.2, "v.py::c": 0.1, "v.py::d": 3.0}  # fmt: skip
    scope_of = _scheduler(3, set())._split_scope  # the xdist group after "@", else the test
    found = lanes.waiting_units(nodeids, scope_of, _plain_nodeid, wall, cpu)
    # a new test (no record) does not count, nor does a unit under WAITING_MIN_S, and a
    # group counts by its sum
    assert found == {"t.py::sleeps", "grp"}


@dataclass(eq=False)
class _Node:
    """What the scheduler uses of pytest-xdist's WorkerController."""

    name: str
    sent: list[int] = field(default_factory=list)
    shutting_down: bool = False

    def __post_init__(self) -> None:
        self.gateway = SimpleNamespace(id=self.name)

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def _scheduler(workers: int, waiting: set[str]) -> lanes.LaneScheduling:
    values = {"tx": [f"{workers}*popen"], "dist": "loadgroup"}
    config = SimpleNamespace(
        option=SimpleNamespace(loadscopereorder=False), getvalue=values.__getitem__
    )
    return lanes.LaneScheduling(config, classify=lambda nodeids, scope_of: waiting)


def _run(
    scheduler: lanes.LaneScheduling, nodes: list[_Node], collection: list[str]
) -> dict[str, list[str]]:
    """Drive the scheduler as pytest-xdist does: add the nodes and their collections,
    schedule, then complete each node's tests one at a time, round robin."""
    for node in nodes:
        scheduler.add_node(node)
    for node in nodes:
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    ran: dict[str, list[str]] = {node.name: [] for node in nodes}
    done = {node.name: 0 for node in nodes}
    while any(done[node.name] < len(node.sent) for node in nodes):
        for node in nodes:
            if done[node.name] < len(node.sent):
                index = node.sent[done[node.name]]
                done[node.name] += 1
                ran[node.name].append(collection[index])
                scheduler.mark_test_complete(node, index)
    return ran


@pytest.fixture
def cores_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes, "cores", lambda: 2)


@pytest.mark.usefixtures("cores_2")
def test_the_lane_worker_runs_only_waiting_units_and_the_others_run_the_rest_first() -> None:
    collection = [f"t.py::busy{i}" for i in range(6)] + [f"t.py::waits{i}" for i in range(3)]
    waiting = {f"t.py::waits{i}" for i in range(3)}
    nodes = [_Node("gw0"), _Node("gw1"), _Node("gw2")]
    ran = _run(_scheduler(3, waiting), nodes, collection)
    assert sorted(chain.from_iterable(ran.values())) == sorted(collection)  # every test once
    assert ran["gw2"] and set(ran["gw2"]) <= waiting
    busy = [nodeid for name in ("gw0", "gw1") for nodeid in ran[name]]
    assert {f"t.py::busy{i}" for i in range(6)} <= set(busy)
    assert ran["gw0"][0].startswith("t.py::busy") and ran["gw1"][0].startswith("t.py::busy")
    assert nodes[2].shutting_down  # the lane stops once no waiting unit is left


@pytest.mark.usefixtures("cores_2")
def test_without_an_extra_worker_it_is_plain_loadgroup() -> None:
    collection = [f"t.py::waits{i}" for i in range(4)] + [f"t.py::busy{i}" for i in range(4)]
    nodes = [_Node("gw0"), _Node("gw1")]
    scheduler = _scheduler(2, {f"t.py::waits{i}" for i in range(4)})
    assert scheduler.lane_id is None
    ran = _run(scheduler, nodes, collection)
    assert sorted(chain.from_iterable(ran.values())) == sorted(collection)
    # in collection order, both workers take whatever comes next: waiting units first here
    assert ran["gw0"][0].startswith("t.py::waits") and ran["gw1"][0].startswith("t.py::waits")
