"""experiment queue and sweeps (issue 13)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exp_queue",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("base", sa.String(length=64), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("sweep_id", sa.String(length=32), nullable=True),
        sa.Column("trial", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=250), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("kill_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exp_queue")),
    )
    op.create_index(
        "ix_exp_queue_status_created_at", "exp_queue", ["status", "created_at"], unique=False
    )
    op.create_index("ix_exp_queue_sweep_id", "exp_queue", ["sweep_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_exp_queue_sweep_id", table_name="exp_queue")
    op.drop_index("ix_exp_queue_status_created_at", table_name="exp_queue")
    op.drop_table("exp_queue")
