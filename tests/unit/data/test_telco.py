from __future__ import annotations

from pathlib import Path

import pytest

from churn_mlops.data import SHIPPED_DATASET, DatasetError, TelcoDataset, load_telco_csv
from churn_mlops.data.telco_example import (
    EXAMPLE_CUSTOMER_ID,
    EXAMPLE_FEATURES,
    FEATURE_NAMES,
    CustomerFeatures,
)


def test_load_shipped_dataset_reads_every_customer(dataset: TelcoDataset) -> None:
    assert len(dataset) == 4930
    assert len(set(dataset.customer_ids)) == 4930
    assert sum(dataset.churned) == 1306
    assert set(dataset.columns) == set(FEATURE_NAMES)


def test_load_blank_total_charges_as_missing(dataset: TelcoDataset) -> None:
    blanks = [i for i, v in enumerate(dataset.columns["total_charges"]) if v is None]
    assert len(blanks) == 8
    assert all(dataset.columns["tenure"][i] == 0 for i in blanks)


def test_every_dataset_row_is_a_valid_request(dataset: TelcoDataset) -> None:
    for row in dataset.feature_rows():
        CustomerFeatures.model_validate(row)


def test_openapi_example_is_the_first_dataset_customer(dataset: TelcoDataset) -> None:
    assert dataset.customer_ids[0] == EXAMPLE_CUSTOMER_ID
    assert next(dataset.feature_rows()) == EXAMPLE_FEATURES


def test_sha256_identifies_the_file(dataset: TelcoDataset, tmp_path: Path) -> None:
    copy = tmp_path / "copy.csv"
    copy.write_bytes(SHIPPED_DATASET.read_bytes())
    assert load_telco_csv(copy).sha256 == dataset.sha256
    copy.write_bytes(SHIPPED_DATASET.read_bytes() + b"\n")
    assert load_telco_csv(copy).sha256 != dataset.sha256


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_load_refuses_missing_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "customerid,gender,churn\n1,Male,No\n")
    with pytest.raises(DatasetError, match=r"missing columns .*tenure"):
        load_telco_csv(path)


def test_load_names_the_line_of_a_bad_number(tmp_path: Path) -> None:
    header, first, second = SHIPPED_DATASET.read_text().splitlines()[:3]
    bad = second.split(",")
    bad[5] = "forty"
    path = _write(tmp_path, "\n".join([header, first, ",".join(bad)]) + "\n")
    with pytest.raises(DatasetError, match=r"line 3: tenure='forty' is not a number"):
        load_telco_csv(path)


def test_load_refuses_unknown_target(tmp_path: Path) -> None:
    header, first = SHIPPED_DATASET.read_text().splitlines()[:2]
    path = _write(tmp_path, header + "\n" + first.rsplit(",", 1)[0] + ",Maybe\n")
    with pytest.raises(DatasetError, match="line 2: churn='Maybe'"):
        load_telco_csv(path)
