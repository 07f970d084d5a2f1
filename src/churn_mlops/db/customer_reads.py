"""The customer read endpoints' statements and their answers as JSON bytes.

`GET /customers/{id}` and `GET /customers` are read far more often than customers change, so
they skip the ORM and pydantic: on PostgreSQL one statement per request (DETAIL_SQL, PAGE_SQL,
run on the read pool's connections, where asyncpg keeps them prepared), no transaction around
it, and rows encoded by orjson straight into the documented JSON. A customer's features are
stored as JSON text in the schema's order (`db.models.FeatureDocument`): asyncpg hands `json`
over as text, which goes into the answer as it is (an `orjson.Fragment`), never decoded.
SQLite, the embedded default, reads through the repository's ORM queries into rows of the same
shape and shares the encoder.
The JSON equals what the pydantic response models would make of the same rows
(tests/integration/db/test_customer_reads.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from churn_mlops.db.models import CUSTOMER_READ_COLUMNS, Prediction
from churn_mlops.db.repository import CustomerRepository

_FEATURES = "c.features"
# The prediction's columns in PredictionRecord's order; the id as text in its canonical form.
_PREDICTION = (
    "p.id::text AS prediction_id, p.external_customer_id, p.model_version, p.probability, "
    "p.will_churn, p.cached, p.latency_ms, p.created_at AS predicted_at"
)
_PREDICTION_FIELDS = (
    *("id", "customer_id", "model_version", "churn_probability", "will_churn", "cached"),
    *("latency_ms", "created_at"),
)
# Only columns ix_predictions_customer_id_created_at holds: an index-only scan, no heap page.
_LATEST = (
    f"LEFT JOIN LATERAL (SELECT {', '.join(CUSTOMER_READ_COLUMNS)}, created_at "  # noqa: S608
    "FROM predictions WHERE customer_id = c.id "
    "ORDER BY created_at DESC LIMIT {limit}) AS p ON true"
)
# A customer and its newest predictions; one row per prediction (one with nulls if none).
DETAIL_SQL = (
    f"SELECT c.external_id, {_FEATURES}, c.created_at, c.updated_at, {_PREDICTION} "  # noqa: S608
    f"FROM customers AS c {_LATEST.format(limit='$2')} WHERE c.external_id = $1 "
    "ORDER BY p.created_at DESC"
)
# Customers after a cursor, each with its latest prediction: an index probe per customer.
PAGE_SQL = (
    f"SELECT c.external_id, {_FEATURES}, c.created_at, c.updated_at, {_PREDICTION}, "  # noqa: S608
    f"c.id AS cursor FROM customers AS c {_LATEST.format(limit='1')} "
    "WHERE c.id > $1 ORDER BY c.id LIMIT $2"
)
_CUSTOMER_TIMES = slice(2, 4)
_PREDICTION_COLUMNS = slice(4, 12)
_OPTIONS = orjson.OPT_UTC_Z


def _features(value: str | dict[str, Any]) -> orjson.Fragment | dict[str, Any]:
    # Text from asyncpg is the stored JSON object, already in the answer's form.
    return orjson.Fragment(value) if isinstance(value, str) else value


def _customer(row: Sequence[Any]) -> dict[str, Any]:
    created_at, updated_at = row[_CUSTOMER_TIMES]
    return {
        "customer_id": row[0],
        "features": _features(row[1]),
        "created_at": created_at,
        "updated_at": updated_at,
    }


def _prediction(row: Sequence[Any]) -> dict[str, Any] | None:
    values = row[_PREDICTION_COLUMNS]
    if values[0] is None:
        return None
    return dict(zip(_PREDICTION_FIELDS, values, strict=True))


def _orm_prediction(prediction: Prediction) -> tuple[Any, ...]:
    return (
        str(prediction.id),
        prediction.external_customer_id,
        prediction.model_version,
        prediction.probability,
        prediction.will_churn,
        prediction.cached,
        prediction.latency_ms,
        prediction.created_at,
    )


_NO_PREDICTION = (None,) * 8


def detail_json(rows: Sequence[Sequence[Any]]) -> bytes:
    """CustomerDetail from the rows of DETAIL_SQL (at least one)."""
    detail = _customer(rows[0])
    detail["recent_predictions"] = [
        prediction for prediction in map(_prediction, rows) if prediction is not None
    ]
    return orjson.dumps(detail, option=_OPTIONS)


def page_json(rows: Sequence[Sequence[Any]], limit: int) -> bytes:
    """CustomerPage from the rows of PAGE_SQL, asked for with `limit`."""
    items = []
    for row in rows:
        item = _customer(row)
        item["latest_prediction"] = _prediction(row)
        items.append(item)
    next_after = rows[-1][-1] if len(rows) == limit else None
    return orjson.dumps({"items": items, "next_after": next_after}, option=_OPTIONS)


async def orm_detail_rows(
    session: AsyncSession, external_id: str, limit: int
) -> list[tuple[Any, ...]]:
    """DETAIL_SQL's rows through the ORM (SQLite has no LATERAL); CustomerNotFound."""
    found = await CustomerRepository(session).with_recent_predictions(external_id, limit)
    customer = found.customer
    head = (customer.external_id, customer.features, customer.created_at, customer.updated_at)
    return [(*head, *_orm_prediction(p)) for p in found.predictions] or [(*head, *_NO_PREDICTION)]


async def orm_page_rows(
    session: AsyncSession, after: int | None, limit: int
) -> list[tuple[Any, ...]]:
    """PAGE_SQL's rows through the ORM."""
    return [
        (
            row.customer.external_id,
            row.customer.features,
            row.customer.created_at,
            row.customer.updated_at,
            *(_NO_PREDICTION if row.latest is None else _orm_prediction(row.latest)),
            row.customer.id,
        )
        for row in await CustomerRepository(session).page(after, limit)
    ]
