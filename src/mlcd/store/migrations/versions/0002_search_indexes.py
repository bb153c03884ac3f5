"""covering (key, value, run_id) indexes for run search

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SHORT_TEXT = sa.text("length(value) <= 600")


def upgrade() -> None:
    with op.batch_alter_table("run_latest_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_run_latest_metrics_key_value")
        batch_op.create_index(
            "ix_run_latest_metrics_key_value", ["key", "value", "run_id"], unique=False
        )
    with op.batch_alter_table("run_params", schema=None) as batch_op:
        batch_op.drop_index("ix_run_params_key_value")
        batch_op.create_index(
            "ix_run_params_key_value", ["key", "value_num", "run_id"], unique=False
        )
        batch_op.create_index(
            "ix_run_params_key_text",
            ["key", "value", "run_id"],
            unique=False,
            postgresql_where=_SHORT_TEXT,
        )
    with op.batch_alter_table("run_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_run_tags_key")
        batch_op.create_index(
            "ix_run_tags_key_value",
            ["key", "value", "run_id"],
            unique=False,
            postgresql_where=_SHORT_TEXT,
        )


def downgrade() -> None:
    with op.batch_alter_table("run_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_run_tags_key_value")
        batch_op.create_index("ix_run_tags_key", ["key"], unique=False)
    with op.batch_alter_table("run_params", schema=None) as batch_op:
        batch_op.drop_index("ix_run_params_key_text")
        batch_op.drop_index("ix_run_params_key_value")
        batch_op.create_index("ix_run_params_key_value", ["key", "value_num"], unique=False)
    with op.batch_alter_table("run_latest_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_run_latest_metrics_key_value")
        batch_op.create_index("ix_run_latest_metrics_key_value", ["key", "value"], unique=False)
