"""The metadata store: SQLAlchemy tables, migrations and one repository module per aggregate.

Repositories are modules of functions taking a ``Connection``; callers choose the
transaction (``store.read()``, ``store.write()`` or ``store.transact(fn)``).
"""

from mlcd.store.db import HEAD, Store, normalise_url

__all__ = ["HEAD", "Store", "normalise_url"]
