"""The ORM tables: customers and their prediction history.

The same models serve PostgreSQL and SQLite: `Uuid` and `UTCDateTime` map to the
native types on PostgreSQL and to portable ones on SQLite. Constraint and index names follow
one naming convention, so alembic's autogenerate names them the same way every time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
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


class FeatureDocument(TypeDecorator[dict[str, Any]]):
    """A customer's features as one JSON object: `json` on PostgreSQL, JSON text on SQLite.

    Written by orjson, compact and in the schema's order, so the text the database keeps is
    byte for byte the `features` object of the read endpoints' answers: the raw reads splice
    it into the response without decoding it. `json`, not `jsonb`: jsonb reorders keys (by
    length) and prints numbers its own way, so every read would have to decode and re-encode.
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        def process(value: Mapping[str, Any] | str | None) -> str | None:
            # Text is an object already encoded so (bulk loads encode their rows themselves).
            if value is None or isinstance(value, str):
                return value
            return orjson.dumps(value).decode()

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        def process(value: Any) -> dict[str, Any] | None:
            if value is None or isinstance(value, dict):
                return value
            return cast(dict[str, Any], orjson.loads(value))

        return process


class Customer(Base):
    """A customer: its external id and its features, a JSON object validated against the
    feature schema whose sha256 is `schema_sha256`."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, Identity(always=False), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    features: Mapped[dict[str, Any]] = mapped_column(FeatureDocument(), nullable=False)
    schema_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    """The sha256 of the feature schema `features` was validated against."""
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

    def __init__(self, **values: Any) -> None:
        # Feature values may be given as keywords of their own (`Customer(external_id=...,
        # **features)`); they become the features object, of the shipped schema by default.
        columns = {key: values.pop(key) for key in _CUSTOMER_KEYS & values.keys()}
        if values:
            columns["features"] = {**columns.get("features", {}), **values}
        if "schema_sha256" not in columns:
            columns["schema_sha256"] = default_schema_sha256()
        super().__init__(**columns)

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not an attribute: a feature by name, as the columns were.
        if not name.startswith("_"):
            features = self.__dict__.get("features")
            if features is not None and name in features:
                return features[name]
        raise AttributeError(name)


_CUSTOMER_KEYS = frozenset(
    {"id", "external_id", "features", "schema_sha256", "created_at", "updated_at"}
)


def default_schema_sha256() -> str:
    """The shipped example's schema hash: what features written without a schema are."""
    from churn_mlops.data import telco_schema

    return telco_schema().sha256


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


# The columns a customer read returns of a prediction, besides the two the index is ordered by.
CUSTOMER_READ_COLUMNS: tuple[str, ...] = (
    *("id", "external_customer_id", "model_version", "probability", "will_churn", "cached"),
    "latency_ms",
)
# A customer's recent predictions read newest first from the first index; `since` uses the second.
# On PostgreSQL the first carries the columns the customer reads return, so they never visit the
# table (an index-only scan instead of one random heap page per prediction), and it leaves out
# anonymous predictions, which no customer read asks for and most logged rows are.
Index(
    "ix_predictions_customer_id_created_at",
    Prediction.customer_id,
    Prediction.created_at.desc(),
    postgresql_include=list(CUSTOMER_READ_COLUMNS),
    postgresql_where=Prediction.customer_id.is_not(None),
    sqlite_where=Prediction.customer_id.is_not(None),
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
