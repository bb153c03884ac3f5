"""search indexes for PostgreSQL (issue 17)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the work on search indexes for PostgreSQL (issue 17)


def downgrade() -> None:
    pass
