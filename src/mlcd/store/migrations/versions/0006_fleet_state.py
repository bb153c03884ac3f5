"""fleet state shared by serve replicas (issue 16)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serve_replicas",
        sa.Column("model", sa.String(length=250), nullable=False),
        sa.Column("replica", sa.String(length=250), nullable=False),
        sa.Column("host", sa.String(length=250), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=True),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model", "replica", name=op.f("pk_serve_replicas")),
    )
    op.create_table(
        "serve_canary_stats",
        sa.Column("model", sa.String(length=250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(length=250), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "version", "replica", "arm", name=op.f("pk_serve_canary_stats")
        ),
    )
    op.create_table(
        "serve_canary_off",
        sa.Column("model", sa.String(length=250), nullable=False),
        sa.Column("alias", sa.String(length=250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("decided_by", sa.String(length=250), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model", "alias", "version", name=op.f("pk_serve_canary_off")),
    )


def downgrade() -> None:
    op.drop_table("serve_canary_off")
    op.drop_table("serve_canary_stats")
    op.drop_table("serve_replicas")
