"""prediction-log segments on object storage, compaction (issue 16)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Segment paths were already free text: a URL (s3://...) needs no schema change. What is
    # new is compaction: the kind of a row and, for a daily file, the paths it replaced.
    with op.batch_alter_table("prediction_segments") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="segment")
        )
        batch.add_column(sa.Column("replaces", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prediction_segments") as batch:
        batch.drop_column("replaces")
        batch.drop_column("kind")
