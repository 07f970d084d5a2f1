"""The ORM tables: customers and their prediction history.

The same models serve PostgreSQL and SQLite: `Uuid` and `UTCDateTime` map to the
native types on PostgreSQL and to portable ones on SQLite. Constraint and index names follow
one naming convention, so alembic's autogenerate names them the same way every time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an `INTEGER PRIMARY KEY`; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out, on PostgreSQL (timestamptz) and SQLite (which keeps
    no zone: values are stored as UTC and read back with it), so comparisons agree on both."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base of every table; other capabilities (security) add theirs on it."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Customer(Base):
    """A customer and the 19 features the model scores, named as `CustomerFeatures`."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, Identity(always=False), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    gender: Mapped[str] = mapped_column(String(16))
    senior_citizen: Mapped[int] = mapped_column(Integer)
    partner: Mapped[str] = mapped_column(String(8))
    dependents: Mapped[str] = mapped_column(String(8))
    tenure: Mapped[int] = mapped_column(Integer)
    phone_service: Mapped[str] = mapped_column(String(8))
    multiple_lines: Mapped[str] = mapped_column(String(32))
    internet_service: Mapped[str] = mapped_column(String(16))
    online_security: Mapped[str] = mapped_column(String(32))
    online_backup: Mapped[str] = mapped_column(String(32))
    device_protection: Mapped[str] = mapped_column(String(32))
    tech_support: Mapped[str] = mapped_column(String(32))
    streaming_tv: Mapped[str] = mapped_column(String(32))
    streaming_movies: Mapped[str] = mapped_column(String(32))
    contract: Mapped[str] = mapped_column(String(32))
    paperless_billing: Mapped[str] = mapped_column(String(8))
    payment_method: Mapped[str] = mapped_column(String(32))
    monthly_charges: Mapped[float] = mapped_column(Float)
    total_charges: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utc_now, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        nullable=False,
        default=utc_now,
        onupdate=utc_now,
        server_default=func.now(),
    )


class Prediction(Base):
    """One answered prediction; `customer_id` is null for an anonymous request.

    The writer generates `id` (client side), so a retried batch insert can skip the rows that
    already arrived (ON CONFLICT DO NOTHING) and never duplicates one.
    """

    __tablename__ = "predictions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="SET NULL"), nullable=True
    )
    external_customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_version: Mapped[str] = mapped_column(String(64), nullable=False)
    probability: Mapped[float] = mapped_column(Float, nullable=False)
    will_churn: Mapped[bool] = mapped_column(Boolean, nullable=False)
    cached: Mapped[bool] = mapped_column(Boolean, nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    challenger_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The shadow challenger that also scored this row (null: none did)."""
    challenger_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    features: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The scored row's encoded features (`CHURN_LOG_FEATURES`; decoded by
    `db.prediction_log.features.decode_rows`); null when they were not logged."""
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utc_now, server_default=func.now()
    )


# A customer's recent predictions read newest first from the first index; `since` uses the second.
Index(
    "ix_predictions_customer_id_created_at",
    Prediction.customer_id,
    Prediction.created_at.desc(),
)
Index("ix_predictions_created_at", Prediction.created_at)


class Outcome(Base):
    """Whether a customer had churned, as observed on a date: the label live model quality is
    measured against. One row per customer and date, so recording it again changes nothing.

    `revised_at` is set when a later report gave the same date another answer (the last one
    wins); it is also how an upsert tells an update from an insert on both databases.
    """

    __tablename__ = "outcomes"
    __table_args__ = (
        UniqueConstraint("customer_id", "observed_at", name="uq_outcomes_customer_id_observed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, Identity(always=False), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    observed_at: Mapped[date] = mapped_column(Date, nullable=False)
    churned: Mapped[bool] = mapped_column(Boolean, nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utc_now, server_default=func.now()
    )
    revised_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# Live quality reads the outcomes of a window of dates; the unique constraint above serves the
# upsert's conflict check and a customer's deletion (its leading column is the foreign key).
Index("ix_outcomes_observed_at", Outcome.observed_at)
