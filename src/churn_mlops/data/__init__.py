"""The shipped IBM Telco Customer Churn sample and its loader."""

from __future__ import annotations

from churn_mlops.data.telco import (
    SHIPPED_DATASET,
    DatasetError,
    TelcoDataset,
    load_telco_csv,
)

__all__ = ["SHIPPED_DATASET", "DatasetError", "TelcoDataset", "load_telco_csv"]
