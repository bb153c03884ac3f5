"""Alembic environment: runs on the connection mlcd hands in (see ``Store.migrate``)."""

from __future__ import annotations

from alembic import context

from mlcd.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the alembic CLI lands here
    raise SystemExit("mlcd migrations run through mlcd.store.Store, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
