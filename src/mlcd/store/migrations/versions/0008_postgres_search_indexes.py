"""search indexes for PostgreSQL (issue 17)

Revision ID: 0008
Revises: 0007

A search walks runs newest first (or drives from its narrowest condition) and checks every
other condition on a metric or numeric param with one seek per run: ``run_id, key`` then the
value. The primary keys ``(run_id, key)`` found the row but had to visit the table for the
value; these covering indexes answer the seek from the index alone (PostgreSQL: an index-only
scan; SQLite: a covering index). Newest 100 of 100,000 runs filtered on a metric and a param
on PostgreSQL: 4,096 probes, each one heap visit fewer.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_run_latest_metrics_run_key_value",
        "run_latest_metrics",
        ["run_id", "key", "value"],
        unique=False,
    )
    op.create_index(
        "ix_run_params_run_key_num", "run_params", ["run_id", "key", "value_num"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_run_params_run_key_num", table_name="run_params")
    op.drop_index("ix_run_latest_metrics_run_key_value", table_name="run_latest_metrics")
