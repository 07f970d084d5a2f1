"""A rate limit of each API key's own: NULL keeps the service's default.

Revision ID: 0005_key_rate_limits
Revises: 0004_outcomes
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_key_rate_limits"
down_revision: str | None = "0004_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite alters a table by copying it; PostgreSQL adds the columns in place.
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("rate_limit_per_second", sa.Float(), nullable=True))
        table.add_column(sa.Column("rate_limit_burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("rate_limit_burst")
        table.drop_column("rate_limit_per_second")
