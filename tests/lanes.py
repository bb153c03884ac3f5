"""A waiting lane for pytest-xdist: one worker more than the machine has cores, which runs only
the tests that mostly wait (canary windows, watcher ticks, time budgets, retries), so the
others never leave a core idle while one of those waits.

Which tests mostly wait comes from the last recorded run: ``tests/cpu.json`` (CPU seconds per
test, written by ``make durations`` beside ``tests/durations.json``) against its wall time. A
work unit (a test, or an ``xdist_group``) waits when it used less than :data:`WAITING_SHARE`
of a core over its time. The lane worker takes only such units, longest first, and stops when
none is left; the other workers take the rest, longest first, then help with the waiting
units the lane has not reached. With no extra worker (``-n`` not above the core count) this is
plain ``--dist loadgroup``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from xdist.scheduler import LoadGroupScheduling

#: A unit whose recorded CPU is below this share of its wall time counts as waiting.
WAITING_SHARE = 0.35
#: Shorter units are not worth a lane: what they leave idle is less than a worker's hand-off.
WAITING_MIN_S = 1.0


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def waiting_units(
    nodeids: list[str],
    scope_of: Callable[[str], str],
    plain: Callable[[str], str],
    wall: Mapping[str, float],
    cpu: Mapping[str, float],
) -> set[str]:
    """The work units (scopes) whose recorded tests mostly waited. A unit with a test that has
    no CPU record (a new test) does not count as waiting."""
    totals: dict[str, list[float]] = {}
    unknown: set[str] = set()
    for nodeid in nodeids:
        scope = scope_of(nodeid)
        key = plain(nodeid)
        if key not in cpu or key not in wall:
            unknown.add(scope)
            continue
        total = totals.setdefault(scope, [0.0, 0.0])
        total[0] += wall[key]
        total[1] += cpu[key]
    return {
        scope
        for scope, (seconds, used) in totals.items()
        if scope not in unknown and seconds >= WAITING_MIN_S and used < WAITING_SHARE * seconds
    }


class LaneScheduling(LoadGroupScheduling):
    """``--dist loadgroup`` with the last worker as the waiting lane (when it is one more than
    the cores)."""

    def __init__(
        self,
        config: Any,
        log: Any = None,
        *,
        classify: Callable[[list[str], Callable[[str], str]], set[str]],
    ) -> None:
        super().__init__(config, log)
        self.classify = classify
        self.waiting: set[str] = set()
        self.lane_id = f"gw{self.numnodes - 1}" if self.numnodes > cores() else None

    def schedule(self) -> None:
        if self.collection is None and self.registered_collections:
            nodeids = list(next(iter(self.registered_collections.values())))
            self.waiting = self.classify(nodeids, self._split_scope)
        super().schedule()

    def _is_lane(self, node: Any) -> bool:
        return self.lane_id is not None and node.gateway.id == self.lane_id

    def _next_scope(self, node: Any) -> str | None:
        lane = self._is_lane(node)
        if self.lane_id is None:
            return next(iter(self.workqueue), None)
        for scope in self.workqueue:
            if (scope in self.waiting) == lane:
                return scope
        if lane:
            return None
        return next(iter(self.workqueue), None)

    def _assign_work_unit(self, node: Any) -> None:
        scope = self._next_scope(node)
        if scope is None:
            return
        work_unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some(
            [collection.index(nodeid) for nodeid, done in work_unit.items() if not done]
        )

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            return
        if not self.workqueue or (self._is_lane(node) and self._next_scope(node) is None):
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 2:
            return
        self._assign_work_unit(node)
