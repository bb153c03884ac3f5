"""Guards around retraining: one retrain per model at a time, cooldown, a daily budget.

The per-model lock is a lease in the metadata store (``locks`` table): it works across
processes and machines, and a holder that crashes stops renewing it, so it expires instead
of blocking for ever.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mlcd.errors import RetrainError
from mlcd.store import Store, events, locks
from mlcd.store.sql import now

LEASE_TTL_S = 60.0


def lease_ttl() -> float:
    """The retrain lease's lifetime: ``MLCD_RETRAIN_LEASE_S`` or 60 s. A crashed holder
    blocks the model for at most this long."""
    return float(os.environ.get("MLCD_RETRAIN_LEASE_S") or LEASE_TTL_S)


STARTED = "retrain.started"


def lock_name(model: str) -> str:
    return f"retrain:{model}"


@dataclass(frozen=True)
class Budget:
    """Whether a retrain may start now, and if not why."""

    allowed: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed, "reason": self.reason}


def check_budget(
    store: Store, model: str, cooldown_s: float, max_per_day: int, at: float | None = None
) -> Budget:
    """Cooldown since the last retrain of ``model`` and retrains in the last 24 h."""
    at = now() if at is None else at
    with store.read() as conn:
        recent = events.query(conn, model=model, kind=STARTED, since=at - 86400)
    if recent and at - recent[0]["at"] < cooldown_s:
        wait = cooldown_s - (at - recent[0]["at"])
        return Budget(
            False, f"cooldown: last retrain {at - recent[0]['at']:.0f}s ago, {wait:.0f}s to go"
        )
    if len(recent) >= max_per_day:
        return Budget(
            False,
            f"daily budget spent: {len(recent)} retrains in the last 24 h (max {max_per_day})",
        )
    return Budget(True, "within cooldown and daily budget")


@contextmanager
def retrain_lock(
    store: Store, model: str, owner: str, ttl_s: float | None = None
) -> Iterator[None]:
    """Hold the retrain lease of ``model`` for the block, renewing it in the background.

    Raises:
        RetrainError: another live process holds it.
    """
    name = lock_name(model)
    ttl = lease_ttl() if ttl_s is None else ttl_s
    if not store.transact(lambda conn: locks.acquire(conn, name, owner, ttl)):
        with store.read() as conn:
            holder = locks.holder(conn, name) or {}
        raise RetrainError(
            f"a retrain of '{model}' is already running (held by {holder.get('owner', '?')})",
            hint="wait for it to finish; a crashed holder's lease expires within a minute",
        )
    with locks.kept(store, name, owner, ttl):
        yield
