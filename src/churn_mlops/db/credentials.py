"""The `users` and `api_keys` tables, on the same declarative base as the rest of the schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from churn_mlops.db.models import Base, utc_now


class User(Base):
    """Someone who logs in with a password (`POST /auth/login`) for a bearer token."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    """argon2id, with its parameters and salt (PHC string format)."""
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utc_now, server_default=func.now()
    )


class ApiKey(Base):
    """A service's API key: only its id and its HMAC-SHA256 (with the server's pepper)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    """The public part of the key (`churn_<key_id>_...`), by which it is looked up."""
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utc_now, server_default=func.now()
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The key's own sustained rate; NULL (with `rate_limit_burst`) means the service's default
    (`CHURN_RATE_LIMIT_PER_SECOND`), so that changing the setting applies to such keys."""
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The key's own bucket capacity; set together with `rate_limit_per_second`."""
