"""prediction-log segments on object storage, compaction (issue 16)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the work on prediction-log segments on object storage, compaction (issue 16)


def downgrade() -> None:
    pass
