"""Training data: CSV or Parquet files read by a feature schema, and the shipped IBM Telco
Customer Churn example."""

from __future__ import annotations

from churn_mlops.data.dataset import Dataset, TrainingSource, load_dataset
from churn_mlops.data.tabular import DatasetError
from churn_mlops.data.telco import (
    SHIPPED_DATASET,
    TELCO_SCHEMA_FILE,
    TelcoDataset,
    load_telco_csv,
    telco_schema,
)

__all__ = [
    "SHIPPED_DATASET",
    "TELCO_SCHEMA_FILE",
    "Dataset",
    "DatasetError",
    "TelcoDataset",
    "TrainingSource",
    "load_dataset",
    "load_telco_csv",
    "telco_schema",
]
