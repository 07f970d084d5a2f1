"""A challenger's shadow score beside the answered prediction.

Revision ID: 0003_challenger
Revises: 0002_security
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_challenger"
down_revision: str | None = "0002_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: adding them rewrites nothing on PostgreSQL.
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("challenger_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("challenger_probability", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("challenger_probability")
        batch.drop_column("challenger_version")
