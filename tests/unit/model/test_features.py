from __future__ import annotations

import math

import numpy as np
import pytest

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import (
    CATEGORICAL_FEATURES,
    EXAMPLE_FEATURES,
    FEATURE_NAMES,
    TELCO_SCHEMA,
    CustomerFeatures,
)
from churn_mlops.model.features import EncoderError, FeatureEncoder


@pytest.fixture(scope="module")
def encoder(dataset: TelcoDataset) -> FeatureEncoder:
    return FeatureEncoder.fit(dataset.schema, dataset.columns)


def test_categorical_features_are_the_string_fields_of_the_schema() -> None:
    strings = {name for name, value in EXAMPLE_FEATURES.items() if isinstance(value, str)}
    assert strings == CATEGORICAL_FEATURES
    assert tuple(CustomerFeatures.model_fields) == FEATURE_NAMES


def test_fit_learns_sorted_vocabularies(encoder: FeatureEncoder) -> None:
    assert encoder.vocabularies["contract"] == ("Month-to-month", "One year", "Two year")
    assert encoder.vocabularies["internet_service"] == ("DSL", "Fiber optic", "No")


def test_encode_row_maps_categories_to_codes_and_keeps_numbers(encoder: FeatureEncoder) -> None:
    row = encoder.encode_row(EXAMPLE_FEATURES)
    assert row.dtype == np.float32
    assert row.shape == (1, len(FEATURE_NAMES))
    encoded = dict(zip(FEATURE_NAMES, row[0].tolist(), strict=True))
    assert encoded["contract"] == 1.0  # "One year"
    assert encoded["gender"] == 0.0  # "Female"
    assert encoded["tenure"] == 41.0
    assert encoded["monthly_charges"] == pytest.approx(79.85, abs=1e-5)


def test_encode_blank_total_charges_as_nan(encoder: FeatureEncoder) -> None:
    row = encoder.encode_row({**EXAMPLE_FEATURES, "total_charges": None})
    assert math.isnan(row[0][FEATURE_NAMES.index("total_charges")])


def test_encode_unseen_category_as_nan(dataset: TelcoDataset) -> None:
    columns = {**dataset.columns, "contract": ["Month-to-month"] * len(dataset)}
    encoder = FeatureEncoder.fit(dataset.schema, columns)
    column = FEATURE_NAMES.index("contract")
    assert math.isnan(encoder.encode_row(EXAMPLE_FEATURES)[0][column])
    assert math.isnan(encoder.encode_columns(dataset.subset([0]).columns)[0][column])


def test_encode_columns_matches_row_by_row(encoder: FeatureEncoder, dataset: TelcoDataset) -> None:
    matrix = encoder.encode_columns(dataset.columns)
    rows = np.vstack([encoder.encode_row(row) for row in dataset.feature_rows()])
    np.testing.assert_array_equal(matrix, rows)
    assert np.isnan(matrix[:, FEATURE_NAMES.index("total_charges")]).sum() == 8


def test_encode_columns_refuses_ragged_columns(encoder: FeatureEncoder) -> None:
    columns = {name: [EXAMPLE_FEATURES[name]] for name in FEATURE_NAMES}
    columns["tenure"] = [1, 2]
    with pytest.raises(EncoderError, match="same length"):
        encoder.encode_columns(columns)


def test_round_trip_through_dict_encodes_identically(
    encoder: FeatureEncoder, dataset: TelcoDataset
) -> None:
    rebuilt = FeatureEncoder.from_dict(encoder.to_dict(), TELCO_SCHEMA)
    assert rebuilt.vocabularies == encoder.vocabularies
    np.testing.assert_array_equal(
        rebuilt.encode_columns(dataset.columns), encoder.encode_columns(dataset.columns)
    )


def test_from_dict_refuses_another_feature_list(encoder: FeatureEncoder) -> None:
    document = encoder.to_dict()
    document["features"] = document["features"][:-1]
    with pytest.raises(EncoderError, match="different feature list"):
        FeatureEncoder.from_dict(document, TELCO_SCHEMA)
