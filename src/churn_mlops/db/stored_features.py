"""Stored customers' features against a model's schema: scoring them, and promoting a model.

Customers keep the features they were validated with (`customers.features`, with the schema's
hash in `schema_sha256`). A model trained later may read a column they lack; its schema's
`default` for that column fills it in when a stored customer is scored (`with_defaults`; a
nullable column without one is read as missing), and a model whose schema has neither for a
column that stored customers lack cannot be promoted (`check_promotable`): it could not score
them.

The feature sets stored are read from one row per distinct `schema_sha256` (few: one per schema
customers were ever written with), so the check costs a couple of index-only statements
whatever the number of customers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from churn_mlops.core.errors import Conflict
from churn_mlops.core.schema import FeatureSchema
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer


class MissingStoredFeatures(Conflict):
    """Stored customers lack features a model reads and its schema gives no default for."""

    def __init__(self, version: str | None, columns: list[str]) -> None:
        model = f"model {version}" if version else "the model"
        super().__init__(
            f"{model} reads {', '.join(columns)}, which stored customers do not have and its "
            "schema gives no default for: add `default:` for "
            f"{'it' if len(columns) == 1 else 'them'} in the schema file and retrain, or "
            "import the customers with these columns first"
        )
        self.columns = columns


def with_defaults(features: Mapping[str, Any], schema: FeatureSchema) -> dict[str, Any]:
    """A stored customer's features as `schema`'s model reads them: a feature the customer
    lacks takes the schema's default (kept as it is when nothing is missing)."""
    if all(name in features for name in schema.names):
        return dict(features)
    completed = dict(features)
    for spec in schema.features:
        if spec.name not in completed:
            if spec.default is None and not spec.nullable:
                raise MissingStoredFeatures(None, [spec.name])
            # A nullable feature without a default is read as missing.
            completed[spec.name] = spec.default
    return completed


async def stored_feature_sets(connection: AsyncConnection) -> dict[str, frozenset[str]]:
    """The feature names of stored customers, by the hash of the schema they were written
    with: one row read per hash."""
    hashes = await connection.execute(select(Customer.schema_sha256).distinct())
    found: dict[str, frozenset[str]] = {}
    for (sha256,) in hashes.all():
        first = await connection.scalar(
            select(func.min(Customer.id)).where(Customer.schema_sha256 == sha256)
        )
        features = await connection.scalar(select(Customer.features).where(Customer.id == first))
        if features is not None:
            found[sha256] = frozenset(features)
    return found


async def missing_columns(connection: AsyncConnection, schema: FeatureSchema) -> list[str]:
    """The features of `schema` that some stored customers lack and that have no default."""
    missing: set[str] = set()
    for sha256, names in (await stored_feature_sets(connection)).items():
        if sha256 != schema.sha256:
            missing.update(schema.missing_from(set(names)))
    return [name for name in schema.names if name in missing]


async def check_promotable(
    connection: AsyncConnection, schema: FeatureSchema, version: str | None = None
) -> None:
    """MissingStoredFeatures (409) naming the columns if `schema`'s model could not score
    every stored customer."""
    if columns := await missing_columns(connection, schema):
        raise MissingStoredFeatures(version, columns)


async def check_database_promotable(
    database: Database, schema: FeatureSchema, version: str | None = None
) -> None:
    """`check_promotable` on `database`; a database not migrated to 0007 yet holds no
    customers of another schema (nothing to check)."""

    def migrated(sync: Any) -> bool:
        inspector = inspect(sync)
        if not inspector.has_table("customers"):
            return False
        return "schema_sha256" in {c["name"] for c in inspector.get_columns("customers")}

    async with database.engine.connect() as connection:
        if await connection.run_sync(migrated):
            await check_promotable(connection, schema, version)


def check_promotion(database_url: str, model_dir: Path, version: str) -> None:
    """What `churn-mlops models promote` checks: MissingStoredFeatures if the stored customers
    of `database_url` lack features the model in `model_dir` has no default for. No database
    configured (an empty URL), or a SQLite file that does not exist: nothing to check."""
    from sqlalchemy.engine import make_url

    from churn_mlops.model.artifact import ModelArtifact

    if not database_url:  # no database configured: no stored customers
        return
    url = make_url(database_url.replace("postgres://", "postgresql://", 1))
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).exists():
        return
    schema = ModelArtifact.load(model_dir).schema

    async def check() -> None:
        database = Database.from_url(database_url)
        try:
            await check_database_promotable(database, schema, version)
        finally:
            await database.dispose()

    asyncio.run(check())
