"""Reads the Telco churn CSV into typed columns, without pandas.

The CSV's headers are the dataset's squashed lower-case names (`seniorcitizen`); the API uses
snake_case (`senior_citizen`). A blank `totalcharges` (customers in their first month) is a
missing value, kept as None.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churn_mlops.core.features import CATEGORICAL_FEATURES, FEATURE_NAMES, INTEGER_FEATURES

SHIPPED_DATASET = Path(__file__).with_name("telco_churn.csv")

_ID_COLUMN = "customerid"
_TARGET_COLUMN = "churn"


class DatasetError(ValueError):
    """The CSV is not in the Telco layout or holds a value that cannot be read."""


def _csv_name(feature: str) -> str:
    return feature.replace("_", "")


@dataclass(frozen=True)
class TelcoDataset:
    """Customers as columns: one list per feature, in `FEATURE_NAMES` order."""

    customer_ids: list[str]
    columns: dict[str, list[Any]]
    churned: list[bool]
    sha256: str

    def __len__(self) -> int:
        return len(self.customer_ids)

    def feature_rows(self) -> Iterator[dict[str, Any]]:
        """Each customer as the `features` object of a prediction request."""
        for i in range(len(self)):
            yield {name: self.columns[name][i] for name in FEATURE_NAMES}

    def subset(self, indices: Sequence[int]) -> TelcoDataset:
        """The customers at `indices`, in that order."""
        return TelcoDataset(
            customer_ids=[self.customer_ids[i] for i in indices],
            columns={name: [values[i] for i in indices] for name, values in self.columns.items()},
            churned=[self.churned[i] for i in indices],
            sha256=self.sha256,
        )


def _parse(feature: str, raw: str, line: int) -> Any:
    text = raw.strip()
    if feature in CATEGORICAL_FEATURES:
        if not text:
            raise DatasetError(f"line {line}: {_csv_name(feature)} is empty")
        return text
    if not text:
        if feature == "total_charges":
            return None
        raise DatasetError(f"line {line}: {_csv_name(feature)} is empty")
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"line {line}: {_csv_name(feature)}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DatasetError(f"line {line}: {_csv_name(feature)}={raw!r} is out of range")
    if feature in INTEGER_FEATURES:
        if not value.is_integer():
            raise DatasetError(f"line {line}: {_csv_name(feature)}={raw!r} is not an integer")
        return int(value)
    return value


def load_telco_csv(path: Path = SHIPPED_DATASET) -> TelcoDataset:
    """Load a CSV in the IBM Telco layout; raise DatasetError naming the line of a bad value."""
    payload = path.read_bytes()
    reader = csv.DictReader(payload.decode("utf-8-sig").splitlines())
    expected = {_ID_COLUMN, _TARGET_COLUMN, *(_csv_name(f) for f in FEATURE_NAMES)}
    header = {name.strip().lower() for name in reader.fieldnames or ()}
    if missing := sorted(expected - header):
        raise DatasetError(f"{path}: missing columns {', '.join(missing)}")

    ids: list[str] = []
    churned: list[bool] = []
    columns: dict[str, list[Any]] = {name: [] for name in FEATURE_NAMES}
    for line, record in enumerate(reader, start=2):
        row = {key.strip().lower(): value for key, value in record.items() if key is not None}
        target = (row[_TARGET_COLUMN] or "").strip()
        if target not in ("Yes", "No"):
            raise DatasetError(f"line {line}: churn={target!r} is neither Yes nor No")
        ids.append(row[_ID_COLUMN].strip())
        churned.append(target == "Yes")
        for name in FEATURE_NAMES:
            columns[name].append(_parse(name, row[_csv_name(name)] or "", line))
    if not ids:
        raise DatasetError(f"{path}: no customers")
    return TelcoDataset(
        customer_ids=ids,
        columns=columns,
        churned=churned,
        sha256=hashlib.sha256(payload).hexdigest(),
    )
