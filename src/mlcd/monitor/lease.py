"""The label-join lease: one process joins a model's labels at a time, and a killed one does
not block the next.

The lease lives in the metadata store (``locks`` table), like the retrain lease: it lasts
``MLCD_MONITOR_LEASE_S`` (60 s by default) and the holder renews it every third of that
while it joins, so a holder that is killed or hangs stops renewing and the lease expires.
A holder on this host whose process is gone is recognised at once (its owner is
``host:pid:...``) and the lease is taken over without waiting.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlcd.errors import MonitorError
from mlcd.store import locks

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from mlcd.store import Store

log = logging.getLogger("mlcd.monitor")

LEASE_PREFIX = "monitor.performance."
LEASE_TTL_S = 60.0


def lease_ttl() -> float:
    """The join lease's lifetime: ``MLCD_MONITOR_LEASE_S`` or 60 s. A hung holder blocks the
    join of its model for at most this long; a killed one on this host not at all."""
    return float(os.environ.get("MLCD_MONITOR_LEASE_S") or LEASE_TTL_S)


def _take(store: Store, name: str, owner: str, ttl: float) -> bool:
    def work(conn: Connection) -> bool:
        if locks.acquire(conn, name, owner, ttl):
            return True
        holder = locks.holder(conn, name)
        previous = str(holder["owner"]) if holder else ""
        if previous and locks.stale(previous):
            log.warning("taking over the label-join lease of %s: that process is gone", previous)
            return locks.take_over(conn, name, previous, owner, ttl)
        return False

    return store.transact(work)


@contextmanager
def join_lease(store: Store, model: str, wait_s: float = 60.0) -> Iterator[None]:
    """Hold the label-join lease of ``model`` for the block, renewing it in the background.

    Args:
        store: the metadata store holding the lease.
        model: the model whose labels are joined.
        wait_s: how long to wait for another live process joining the same model.

    Raises:
        MonitorError: another live process kept the lease past ``wait_s``.
    """
    name = f"{LEASE_PREFIX}{model}"
    owner = f"{locks.owner_id()}:{id(store)}"
    ttl = lease_ttl()
    deadline = time.monotonic() + wait_s
    while not _take(store, name, owner, ttl):
        if time.monotonic() > deadline:
            with store.read() as conn:
                holder = locks.holder(conn, name) or {}
            raise MonitorError(
                f"another process is joining labels for model '{model}' "
                f"(held by {holder.get('owner', '?')})",
                hint="wait for the other 'mlcd monitor' to finish, then retry; the lease of "
                f"one that was killed or hangs expires within {ttl:g} s",
            )
        time.sleep(0.2)
    with locks.kept(store, name, owner, ttl):
        yield
