"""The scored row's encoded features beside a logged prediction (`CHURN_LOG_FEATURES`).

Revision ID: 0006_prediction_features
Revises: 0005_key_rate_limits
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_prediction_features"
down_revision: str | None = "0005_key_rate_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL adds it without rewriting the table; rows logged
    # before (or with the setting off) read as null.
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("features", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("features")
