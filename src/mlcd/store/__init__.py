"""The metadata store: SQLAlchemy tables, migrations and one repository module per aggregate.

Repositories are modules of functions taking a ``Connection``; callers choose the
transaction (``store.read()``, ``store.write()`` or ``store.transact(fn)``).

``Store`` and friends load on first use, so that ``mlcd.store.lite`` (the stdlib-sqlite3 fast
path) and ``mlcd.store.records`` import without SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcd.store.db import HEAD, Store, normalise_url

__all__ = ["HEAD", "Store", "normalise_url"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mlcd.store import db

        return getattr(db, name)
    raise AttributeError(f"module 'mlcd.store' has no attribute {name!r}")
