"""Customers and their prediction history.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("gender", sa.String(length=16), nullable=False),
        sa.Column("senior_citizen", sa.Integer(), nullable=False),
        sa.Column("partner", sa.String(length=8), nullable=False),
        sa.Column("dependents", sa.String(length=8), nullable=False),
        sa.Column("tenure", sa.Integer(), nullable=False),
        sa.Column("phone_service", sa.String(length=8), nullable=False),
        sa.Column("multiple_lines", sa.String(length=32), nullable=False),
        sa.Column("internet_service", sa.String(length=16), nullable=False),
        sa.Column("online_security", sa.String(length=32), nullable=False),
        sa.Column("online_backup", sa.String(length=32), nullable=False),
        sa.Column("device_protection", sa.String(length=32), nullable=False),
        sa.Column("tech_support", sa.String(length=32), nullable=False),
        sa.Column("streaming_tv", sa.String(length=32), nullable=False),
        sa.Column("streaming_movies", sa.String(length=32), nullable=False),
        sa.Column("contract", sa.String(length=32), nullable=False),
        sa.Column("paperless_billing", sa.String(length=8), nullable=False),
        sa.Column("payment_method", sa.String(length=32), nullable=False),
        sa.Column("monthly_charges", sa.Float(), nullable=False),
        sa.Column("total_charges", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("external_customer_id", sa.String(length=64), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("will_churn", sa.Boolean(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_predictions_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index(
        "ix_predictions_customer_id_created_at",
        "predictions",
        ["customer_id", sa.literal_column("created_at DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_customer_id_created_at", table_name="predictions")
    op.drop_index("ix_predictions_created_at", table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("customers")
