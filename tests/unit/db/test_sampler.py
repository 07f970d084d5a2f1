from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import FEATURE_NAMES, CustomerFeatures
from churn_mlops.db.seed import (
    CUSTOMER_COLUMNS,
    CustomerSampler,
    synthetic_id,
    synthetic_predictions,
)


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    rows = [json.loads(features) for features in columns["features"]]
    assert all(list(row) == list(FEATURE_NAMES) for row in rows)  # the schema's order
    return rows


def test_synthetic_customers_satisfy_the_api_contract(dataset: TelcoDataset) -> None:
    columns = CustomerSampler(dataset, seed=1).columns(0, 2000)
    assert list(columns) == list(CUSTOMER_COLUMNS)
    for row in _rows(columns):
        CustomerFeatures.model_validate(row)  # raises on any invalid value
    assert columns["external_id"][:2] == ["SYN-000000000", "SYN-000000001"]


def test_synthetic_customers_keep_the_features_consistent(dataset: TelcoDataset) -> None:
    rows = _rows(CustomerSampler(dataset, seed=2).columns(100, 3000))
    for row in rows:
        if row["internet_service"] == "No":
            assert row["streaming_tv"] == "No internet service"
        if row["phone_service"] == "No":
            assert row["multiple_lines"] == "No phone service"
        # A row keeps its nulls (a customer not billed yet has tenure 0), and its numbers are
        # jittered by a few units: at most 3 months of tenure.
        if row["total_charges"] is None:
            assert row["tenure"] <= 3


def test_synthetic_customers_follow_the_dataset_distribution(dataset: TelcoDataset) -> None:
    rows = _rows(CustomerSampler(dataset, seed=3).columns(0, 20_000))
    for name in ("contract", "internet_service", "payment_method"):
        real = Counter(dataset.columns[name])
        drawn = Counter(row[name] for row in rows)
        for value, count in real.items():
            assert abs(drawn[value] / len(rows) - count / len(dataset)) < 0.02, (name, value)
    real_charges = np.asarray(dataset.columns["monthly_charges"])
    drawn_charges = np.asarray([row["monthly_charges"] for row in rows])
    assert abs(drawn_charges.mean() - real_charges.mean()) < 1.0


def test_synthetic_customers_are_reproducible(dataset: TelcoDataset) -> None:
    first = CustomerSampler(dataset, seed=4).columns(50, 100)
    again = CustomerSampler(dataset, seed=4).columns(50, 100)
    other = CustomerSampler(dataset, seed=5).columns(50, 100)
    assert first == again
    assert first != other
    assert first["external_id"][0] == synthetic_id(50)


def test_synthetic_predictions_belong_to_the_given_customers() -> None:
    ids = np.asarray([10, 20, 30], dtype=np.int64)
    external = np.asarray(["A", "B", "C"], dtype=object)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    data = synthetic_predictions(ids, external, 1000, seed=1, now=now)
    pairs = set(zip(data["customer_id"], data["external_customer_id"], strict=True))
    assert pairs == {(10, "A"), (20, "B"), (30, "C")}
    assert len(set(data["id"])) == 1000
    assert all(p.version == 4 for p in data["id"])
    assert all(0 <= p <= 1 for p in data["probability"])
    assert all(created <= now for created in data["created_at"])
    assert all(created.tzinfo is not None for created in data["created_at"])
