"""The shipped example: the IBM Telco Customer Churn sample and its schema file.

`telco_churn.csv`'s headers are the dataset's squashed lower-case names (`seniorcitizen`); its
schema file, `telco_schema.yaml`, gives them their snake_case names and the bounds and
descriptions the data alone cannot say. A blank `totalcharges` (customers in their first month)
is a missing value, kept as None.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

from churn_mlops.core.schema import FeatureSchema
from churn_mlops.data.dataset import Dataset, load_dataset, parse_table
from churn_mlops.data.tabular import read_table

SHIPPED_DATASET = Path(__file__).with_name("telco_churn.csv")
TELCO_SCHEMA_FILE = Path(__file__).with_name("telco_schema.yaml")

TelcoDataset = Dataset


@cache
def _shipped() -> Dataset:
    return load_dataset(SHIPPED_DATASET, schema_file=TELCO_SCHEMA_FILE)


def telco_schema() -> FeatureSchema:
    """The shipped example's schema: inferred from the shipped CSV and its schema file."""
    return _shipped().schema


def load_telco_csv(path: Path = SHIPPED_DATASET) -> Dataset:
    """A CSV in the IBM Telco layout, read by the shipped example's schema; DatasetError
    naming the line of a bad value."""
    if path == SHIPPED_DATASET:
        shipped = _shipped()
        # A copy: the caller may change its columns, the next caller must not see that.
        return dataclasses.replace(
            shipped,
            customer_ids=list(shipped.customer_ids),
            columns={name: list(values) for name, values in shipped.columns.items()},
            churned=list(shipped.churned),
        )
    return parse_table(read_table(path), telco_schema())
