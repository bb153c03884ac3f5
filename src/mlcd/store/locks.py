"""Named leases in the metadata store: survive crashes by expiring, work across machines."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, select, update

from mlcd.store.sql import now
from mlcd.store.tables import locks

if TYPE_CHECKING:
    from mlcd.store import Store

log = logging.getLogger("mlcd.store")


def owner_id() -> str:
    """This process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a holder that died leaves stale state)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def stale(owner: str) -> bool:
    """Whether lease owner ``host:pid[:...]`` is a process of this host that has died (its
    lease can be taken at once instead of waiting for it to expire)."""
    host, _sep, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def take_over(conn: Connection, name: str, old_owner: str, owner: str, ttl_s: float) -> bool:
    """Take the lease ``name`` from ``old_owner`` (a holder known to be dead); True on success."""
    current = now()
    result = conn.execute(
        update(locks)
        .where(locks.c.name == name, locks.c.owner == old_owner)
        .values(owner=owner, acquired_at=current, expires_at=current + ttl_s)
    )
    return bool(result.rowcount)


def acquire(conn: Connection, name: str, owner: str, ttl_s: float) -> bool:
    """Take the lease ``name`` if it is free or expired (or already ours); True on success."""
    current = now()
    row = conn.execute(select(locks).where(locks.c.name == name)).mappings().first()
    if row is None:
        conn.execute(
            locks.insert().values(
                name=name, owner=owner, acquired_at=current, expires_at=current + ttl_s
            )
        )
        return True
    if row["owner"] == owner or row["expires_at"] < current:
        conn.execute(
            update(locks)
            .where(locks.c.name == name)
            .values(owner=owner, acquired_at=current, expires_at=current + ttl_s)
        )
        return True
    return False


def renew(conn: Connection, name: str, owner: str, ttl_s: float) -> bool:
    """Extend our lease; False if it is no longer ours."""
    result = conn.execute(
        update(locks)
        .where(locks.c.name == name, locks.c.owner == owner)
        .values(expires_at=now() + ttl_s)
    )
    return bool(result.rowcount)


def release(conn: Connection, name: str, owner: str) -> None:
    conn.execute(delete(locks).where(locks.c.name == name, locks.c.owner == owner))


def holder(conn: Connection, name: str) -> dict[str, object] | None:
    row = conn.execute(select(locks).where(locks.c.name == name)).mappings().first()
    return dict(row) if row else None


@contextmanager
def kept(store: Store, name: str, owner: str, ttl_s: float) -> Iterator[None]:
    """Keep an acquired lease for the block: renew it every third of its lifetime in a
    background thread, release it at the end. A holder that is killed or hangs stops renewing,
    so the lease expires; a lease taken over by another process is logged and left alone."""
    stop = threading.Event()

    def renew_loop() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                if not store.transact(lambda conn: renew(conn, name, owner, ttl_s)):
                    log.warning("the lease '%s' was taken over by another process", name)
                    return
            except Exception:  # a transient store error: the next renewal retries
                continue

    thread = threading.Thread(target=renew_loop, name=f"mlcd-lease-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        store.transact(lambda conn: release(conn, name, owner))
