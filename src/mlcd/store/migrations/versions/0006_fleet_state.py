"""fleet state shared by serve replicas (issue 16)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the work on fleet state shared by serve replicas (issue 16)


def downgrade() -> None:
    pass
