"""Recorded outcomes: whether a customer had churned, as observed on a date.

Revision ID: 0004_outcomes
Revises: 0003_challenger
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_outcomes"
down_revision: str | None = "0003_challenger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("observed_at", sa.Date(), nullable=False),
        sa.Column("churned", sa.Boolean(), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revised_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_outcomes_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint(
            "customer_id", "observed_at", name=op.f("uq_outcomes_customer_id_observed_at")
        ),
    )
    op.create_index("ix_outcomes_observed_at", "outcomes", ["observed_at"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_observed_at", table_name="outcomes")
    op.drop_table("outcomes")
