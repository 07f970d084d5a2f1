"""Customers with any columns: the 19 Telco feature columns become one JSON object,
`features`, beside `schema_sha256`, the hash of the schema the row was validated against.

Rows are rewritten in Python, in id order and in batches: orjson writes each object compact
and in the schema's order, exactly as the service writes new rows, so the read endpoints'
answers stay byte for byte what the columns gave (PostgreSQL's own float8-to-JSON would print
70.0 as 70). The downgrade restores the columns from the objects; it refuses a table holding
customers of another schema, which those columns cannot hold.

Revision ID: 0007_customer_features_json
Revises: 0006_prediction_features
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0007_customer_features_json"
down_revision: str | None = "0006_prediction_features"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000

# The columns as 0001_initial made them, in the shipped schema's order.
_TELCO_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any], bool], ...] = (
    ("gender", sa.String(length=16), False),
    ("senior_citizen", sa.Integer(), False),
    ("partner", sa.String(length=8), False),
    ("dependents", sa.String(length=8), False),
    ("tenure", sa.Integer(), False),
    ("phone_service", sa.String(length=8), False),
    ("multiple_lines", sa.String(length=32), False),
    ("internet_service", sa.String(length=16), False),
    ("online_security", sa.String(length=32), False),
    ("online_backup", sa.String(length=32), False),
    ("device_protection", sa.String(length=32), False),
    ("tech_support", sa.String(length=32), False),
    ("streaming_tv", sa.String(length=32), False),
    ("streaming_movies", sa.String(length=32), False),
    ("contract", sa.String(length=32), False),
    ("paperless_billing", sa.String(length=8), False),
    ("payment_method", sa.String(length=32), False),
    ("monthly_charges", sa.Float(), False),
    ("total_charges", sa.Float(), True),
)
_NAMES = tuple(name for name, _, _ in _TELCO_COLUMNS)


def _telco_sha256() -> str:
    from churn_mlops.data import telco_schema

    schema = telco_schema()
    if schema.names != _NAMES:  # the shipped schema is what these columns were
        raise RuntimeError(f"the shipped schema's features are not {', '.join(_NAMES)}")
    return schema.sha256


def _json_parameter(connection: sa.engine.Connection) -> str:
    # PostgreSQL takes the text as json; SQLite keeps it as text (a CAST would make it a number).
    return "CAST(:features AS json)" if connection.dialect.name == "postgresql" else ":features"


def _batches(connection: sa.engine.Connection, columns: str) -> Any:
    after = -1
    while True:
        rows = connection.execute(
            sa.text(
                f"SELECT id, {columns} FROM customers WHERE id > :after "  # noqa: S608
                "ORDER BY id LIMIT :limit"
            ),
            {"after": after, "limit": BATCH},
        ).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("features", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("schema_sha256", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    sha256 = _telco_sha256()
    update = sa.text(
        f"UPDATE customers SET features = {_json_parameter(connection)}, "  # noqa: S608
        "schema_sha256 = :sha256 WHERE id = :id"
    )
    for rows in _batches(connection, ", ".join(_NAMES)):
        connection.execute(
            update,
            [
                {
                    "id": row[0],
                    "features": orjson.dumps(dict(zip(_NAMES, row[1:], strict=True))).decode(),
                    "sha256": sha256,
                }
                for row in rows
            ],
        )
    with op.batch_alter_table("customers") as batch:
        batch.alter_column("features", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("schema_sha256", existing_type=sa.String(length=64), nullable=False)
        for name in _NAMES:
            batch.drop_column(name)


def downgrade() -> None:
    connection = op.get_bind()
    sha256 = _telco_sha256()
    others = connection.execute(
        sa.text("SELECT count(*) FROM customers WHERE schema_sha256 <> :sha256"),
        {"sha256": sha256},
    ).scalar_one()
    if others:
        raise RuntimeError(
            f"{others} customers have features of another schema than the shipped one, which "
            "the columns of 0006 cannot hold: delete them before downgrading"
        )
    with op.batch_alter_table("customers") as batch:
        for name, kind, _ in _TELCO_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    assignments = ", ".join(f"{name} = :{name}" for name in _NAMES)
    update = sa.text(f"UPDATE customers SET {assignments} WHERE id = :id")  # noqa: S608
    for rows in _batches(connection, "features"):
        values = []
        for row in rows:
            features = row[1] if isinstance(row[1], dict) else orjson.loads(row[1])
            values.append({"id": row[0], **{name: features.get(name) for name in _NAMES}})
        connection.execute(update, values)
    with op.batch_alter_table("customers") as batch:
        for name, kind, nullable in _TELCO_COLUMNS:
            if not nullable:
                batch.alter_column(name, existing_type=kind, nullable=False)
        batch.drop_column("schema_sha256")
        batch.drop_column("features")
