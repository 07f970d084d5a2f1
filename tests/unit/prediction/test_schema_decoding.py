"""The decoder of a schema that is not Telco: built from the model's `request_models(schema)`,
encoding as the model's encoder does, refusing per field, with each kind's rules."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import numpy as np
import pytest

from churn_mlops.core.errors import InvalidRequest
from churn_mlops.core.request_models import request_models
from churn_mlops.core.schema import FeatureSchema, FeatureSpec, TargetSpec
from churn_mlops.data import Dataset
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.features import FeatureEncoder
from churn_mlops.prediction.decoding import RequestDecoder, request_structs
from churn_mlops.prediction.strict_parser import StrictBodyParser
from tests.fixtures.own_data import OWN_FEATURES, REGIONS
from tests.fixtures.requests import prediction_bodies


@pytest.fixture(scope="module")
def own_decoder(own_artifact: ModelArtifact) -> RequestDecoder:
    parser = StrictBodyParser(max_batch_rows=5000, schema=own_artifact.schema)
    return RequestDecoder(own_artifact.encoder, parser)


def _body(**changes: Any) -> bytes:
    features = {
        "region": "region-07",
        "plan": "pro",
        "seats": 12,
        "monthly_spend": 99.5,
        "logins_last30d": 4,
        "has_support_contract": True,
    }
    return json.dumps({"customer_id": "acc-1", "features": {**features, **changes}}).encode()


def _fast_accepts(decoder: RequestDecoder, raw: bytes) -> bool:
    struct = request_structs(decoder.bodies.models).request
    try:
        msgspec.json.decode(raw, type=struct)
    except msgspec.ValidationError:
        return False
    return True


def test_the_structs_have_the_schemas_fields(own_decoder: RequestDecoder) -> None:
    structs = request_structs(own_decoder.bodies.models)
    assert [f.name for f in msgspec.structs.fields(structs.features)] == list(OWN_FEATURES)
    assert own_decoder.names == OWN_FEATURES


def test_every_training_row_takes_the_fast_path_with_the_encoders_rows(
    own_decoder: RequestDecoder, own_artifact: ModelArtifact, own_dataset: Dataset
) -> None:
    raw = json.dumps(prediction_bodies(own_dataset, len(own_dataset.customer_ids))).encode()
    struct = request_structs(own_decoder.bodies.models).request
    assert len(msgspec.json.decode(raw, type=list[struct])) == len(own_dataset.customer_ids)  # type: ignore[valid-type]
    customer_ids, rows = own_decoder.batch(raw)
    assert customer_ids == own_dataset.customer_ids
    np.testing.assert_array_equal(rows, own_artifact.encoder.encode_columns(own_dataset.columns))


def test_single_rows_encode_as_the_encoder_does(
    own_decoder: RequestDecoder, own_artifact: ModelArtifact, own_dataset: Dataset
) -> None:
    for body in prediction_bodies(own_dataset, 50):
        customer_id, row = own_decoder.single(json.dumps(body).encode())
        assert customer_id == body["customer_id"]
        np.testing.assert_array_equal(row, own_artifact.encoder.encode_row(body["features"]))


@pytest.mark.parametrize("plan", ["platinum", None])
def test_an_unseen_or_null_plan_is_read_as_missing(
    own_decoder: RequestDecoder, plan: str | None
) -> None:
    raw = _body(plan=plan)
    assert _fast_accepts(own_decoder, raw)
    _, row = own_decoder.single(raw)
    _, rows = own_decoder.batch(b"[" + raw + b"]")
    assert math.isnan(row[0, OWN_FEATURES.index("plan")])
    np.testing.assert_array_equal(rows, row)


def test_a_boolean_feature_is_encoded_one_or_zero_and_a_null_integer_nan(
    own_decoder: RequestDecoder,
) -> None:
    _, yes = own_decoder.single(_body(has_support_contract=True, logins_last30d=None))
    _, no = own_decoder.single(_body(has_support_contract=False))
    column = OWN_FEATURES.index("has_support_contract")
    assert (yes[0, column], no[0, column]) == (1.0, 0.0)
    assert math.isnan(yes[0, OWN_FEATURES.index("logins_last30d")])


def test_an_integral_float_takes_the_pydantic_path_and_encodes_the_same(
    own_decoder: RequestDecoder,
) -> None:
    lax = _body(seats=12.0)
    assert not _fast_accepts(own_decoder, lax)
    assert own_decoder.single(lax)[1].tolist() == own_decoder.single(_body())[1].tolist()
    _, rows = own_decoder.batch(b"[" + _body() + b"," + lax + b"]")
    np.testing.assert_array_equal(rows[0], rows[1])


REFUSED = {
    "unknown field": ({"colour": "red"}, "features.colour", "Extra inputs are not permitted"),
    "string for an integer": ({"seats": "12"}, "features.seats", "Input should be a valid integer"),
    "seats below range": (
        {"seats": 0},
        "features.seats",
        "Input should be greater than or equal to 1",
    ),
    "seats above range": (
        {"seats": 100_001},
        "features.seats",
        "Input should be less than or equal to 100000",
    ),
    "unseen region": ({"region": "region-99"}, "features.region", "Input should be "),
    "null region": ({"region": None}, "features.region", "Input should be "),
    "null seats": ({"seats": None}, "features.seats", "Input should be a valid integer"),
    "boolean as a string": (
        {"has_support_contract": "true"},
        "features.has_support_contract",
        "Input should be a valid boolean",
    ),
    "number as a string": (
        {"monthly_spend": "9.5"},
        "features.monthly_spend",
        "Input should be a valid number",
    ),
}


@pytest.mark.parametrize(("changes", "field", "reason"), REFUSED.values(), ids=list(REFUSED))
def test_a_bad_value_is_refused_naming_its_field(
    own_decoder: RequestDecoder, changes: dict[str, Any], field: str, reason: str
) -> None:
    raw = _body(**changes)
    for decode in (own_decoder.single, lambda body: own_decoder.batch(b"[" + body + b"]")):
        with pytest.raises(InvalidRequest) as refused:
            decode(raw)
        errors = refused.value.errors or []
        assert len(errors) == 1
        assert errors[0].field.removeprefix("[0].") == field
        assert errors[0].reason.startswith(reason)


def test_the_unseen_region_refusal_lists_the_schemas_values(own_decoder: RequestDecoder) -> None:
    with pytest.raises(InvalidRequest) as refused:
        own_decoder.single(_body(region="nowhere"))
    reason = (refused.value.errors or [])[0].reason
    assert all(f"'{region}'" in reason for region in REGIONS)


def test_a_telco_body_is_refused_by_the_other_models_decoder(
    own_decoder: RequestDecoder,
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        own_decoder.single(json.dumps({"features": EXAMPLE_FEATURES}).encode())
    fields = {e.field for e in refused.value.errors or []}
    assert "features.tenure" in fields
    assert "features.region" in fields


def test_a_decoder_refuses_an_encoder_of_other_features(own_artifact: ModelArtifact) -> None:
    with pytest.raises(ValueError, match="not the schema's"):
        RequestDecoder(own_artifact.encoder, StrictBodyParser(10))


def _flag_schema() -> tuple[FeatureSchema, FeatureEncoder]:
    schema = FeatureSchema(
        features=(
            FeatureSpec("trial", "integer", "Trial", minimum=0, maximum=1),
            FeatureSpec("tier", "categorical", "Tier", nullable=True, values=("a", "b", "c")),
        ),
        target=TargetSpec("churned"),
        example={"trial": 1, "tier": "a"},
    )
    # "c" is allowed by the schema but was never seen in training: NaN for the model.
    return schema, FeatureEncoder(schema.names, {"tier": ["a", "b"]})


@pytest.mark.parametrize(("sent", "encoded"), [(True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0)])
def test_a_zero_one_flag_takes_booleans_too(sent: Any, encoded: float) -> None:
    schema, encoder = _flag_schema()
    decoder = RequestDecoder(encoder, StrictBodyParser(10, schema=schema))
    body = json.dumps({"features": {"trial": sent, "tier": "b"}}).encode()
    _, row = decoder.single(body)
    _, rows = decoder.batch(b"[" + body + b"]")
    assert row.tolist() == rows.tolist() == [[encoded, 1.0]]


def test_a_value_the_schema_allows_but_training_never_saw_is_nan() -> None:
    schema, encoder = _flag_schema()
    decoder = RequestDecoder(encoder, StrictBodyParser(10, schema=schema))
    _, row = decoder.single(b'{"features": {"trial": 0, "tier": "c"}}')
    _, null = decoder.single(b'{"features": {"trial": 0, "tier": null}}')
    assert math.isnan(row[0, 1])
    assert math.isnan(null[0, 1])
    with pytest.raises(InvalidRequest):
        decoder.single(b'{"features": {"trial": 2, "tier": "a"}}')


def test_a_schema_of_one_feature_decodes_rows_of_one_value() -> None:
    schema = FeatureSchema(
        features=(FeatureSpec("spend", "number", "Spend", minimum=0, maximum=10),),
        target=TargetSpec("churned"),
    )
    decoder = RequestDecoder(FeatureEncoder(schema.names, {}), StrictBodyParser(10, schema=schema))
    _, row = decoder.single(b'{"features": {"spend": 2.5}, "explain": true}')
    customer_ids, rows, explained = decoder.batch_explained(
        b'[{"features": {"spend": 2.5}, "explain": true}, {"features": {"spend": 3}}]'
    )
    assert row.tolist() == [[2.5]]
    assert rows.tolist() == [[2.5], [3.0]]
    assert explained == [(2.5,), None]
    assert customer_ids == [None, None]


def test_the_request_models_of_one_schema_give_the_same_structs(
    own_artifact: ModelArtifact,
) -> None:
    models = request_models(own_artifact.schema)
    assert request_structs(models) is request_structs(request_models(own_artifact.schema))
    assert (
        request_structs(models).request
        is not request_structs(request_models(StrictBodyParser(1).schema)).request
    )
