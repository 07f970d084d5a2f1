"""Request bodies of the load tests, from the training data the served model was trained on.

The rows are the data file's, read by its feature schema (CHURN_DATA_PATH, CHURN_DATA_SCHEMA,
CHURN_DATA_TARGET, CHURN_DATA_ID_COLUMN; the shipped Telco sample by default): Locust reads them
at start, and k6, which cannot run Python, reads the file this module writes:

    python -m tests.load.bodies --out k6-bodies.json
    k6 run -e BODIES=k6-bodies.json tests/load/k6-test.js
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from churn_mlops.data import Dataset, TrainingSource
from churn_mlops.model.provisioning import training_source
from churn_mlops.settings import Settings


def training_data() -> Dataset:
    """The dataset the settings name (what `serve` trains on at a first run)."""
    return training_source(Settings()).load()


def prediction_bodies(dataset: Dataset, limit: int | None = None) -> list[dict[str, Any]]:
    """`/predict` bodies, one per customer of `dataset` (the first `limit`)."""
    ids = dataset.customer_ids[:limit]
    rows = dataset.feature_rows()
    return [{"customer_id": customer_id, "features": next(rows)} for customer_id in ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write /predict bodies for k6 as JSON.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=None, help="default: CHURN_DATA_PATH")
    parser.add_argument("--target", default=None)
    parser.add_argument("--schema", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.data is not None:
        dataset = TrainingSource(args.data, args.target, None, args.schema).load()
    else:
        dataset = training_data()
    bodies = prediction_bodies(dataset, args.limit)
    args.out.write_text(json.dumps(bodies))
    print(f"{len(bodies)} bodies of {len(dataset.schema.names)} features written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
