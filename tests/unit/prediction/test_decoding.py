"""The msgspec fast decoder accepts only what the pydantic contract accepts, encoded the same."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import numpy as np
import pytest
from pydantic import BaseModel, Field

from churn_mlops.core.errors import InvalidRequest, PayloadTooLarge
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import (
    EXAMPLE_FEATURES,
    FEATURE_NAMES,
    CustomerFeatures,
    PredictRequest,
)
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.decoding import RequestDecoder, _msgspec_type, _struct
from churn_mlops.prediction.strict_parser import StrictBodyParser
from tests.fixtures.requests import prediction_bodies
from tests.fixtures.telco_decoding import FeaturesStruct, RequestStruct


@pytest.fixture(scope="module")
def decoder(artifact: ModelArtifact) -> RequestDecoder:
    return RequestDecoder(artifact.encoder, StrictBodyParser(max_batch_rows=5000))


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    -1,
    1.0,
    1.5,
    0.0,
    -0.0,
    120,
    121,
    10**30,
    "",
    "1",
    "Yes",
    "No",
    "Male",
    "DSL",
    "No internet service",
    "No phone service",
    "x" * 70,
    [],
    {},
    [1],
    {"a": 1},
    3320.75,
    1e308,
]


def _mutations() -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = []
    for name in FEATURE_NAMES:
        for value in ODD_VALUES:
            body = {"customer_id": "c-1", "features": {**EXAMPLE_FEATURES, name: value}}
            cases.append((f"{name}={value!r:.20}", json.dumps(body).encode()))
        missing = {k: v for k, v in EXAMPLE_FEATURES.items() if k != name}
        cases.append((f"without {name}", json.dumps({"features": missing}).encode()))
    for value in ODD_VALUES:
        body = {"customer_id": value, "features": EXAMPLE_FEATURES}
        cases.append((f"customer_id={value!r:.20}", json.dumps(body).encode()))
    extra = {"features": {**EXAMPLE_FEATURES, "age": 3}}
    cases += [
        ("extra feature", json.dumps(extra).encode()),
        ("extra field", json.dumps({"features": EXAMPLE_FEATURES, "x": 1}).encode()),
        (
            "64-char id",
            json.dumps({"customer_id": "é" * 64, "features": EXAMPLE_FEATURES}).encode(),
        ),
        ("NaN", json.dumps({"features": {**EXAMPLE_FEATURES, "tenure": float("nan")}}).encode()),
        ("not json", b"{"),
        ("array", b"[]"),
    ]
    return cases


MUTATIONS = _mutations()


def _pydantic(raw: bytes, artifact: ModelArtifact) -> tuple[str | None, np.ndarray] | str:
    try:
        request = PredictRequest.model_validate_json(raw)
    except ValueError as error:
        return str(error.__class__.__name__)
    return request.customer_id, artifact.encoder.encode_row(request.features.__dict__)


@pytest.mark.parametrize(("case", "raw"), MUTATIONS, ids=[c for c, _ in MUTATIONS])
def test_fast_decoder_agrees_with_the_pydantic_contract(
    decoder: RequestDecoder, artifact: ModelArtifact, case: str, raw: bytes
) -> None:
    expected = _pydantic(raw, artifact)
    try:
        msgspec.json.decode(raw, type=RequestStruct)
        fast_accepts = True
    except (msgspec.ValidationError, msgspec.DecodeError):
        fast_accepts = False
    if fast_accepts:
        assert not isinstance(expected, str), f"{case}: msgspec accepts what pydantic refuses"
    if isinstance(expected, str):
        with pytest.raises(InvalidRequest):
            decoder.single(raw)
        return
    customer_id, row = decoder.single(raw)
    assert customer_id == expected[0]
    np.testing.assert_array_equal(row, expected[1])


def test_refusals_carry_the_same_errors_as_pydantic(decoder: RequestDecoder) -> None:
    raw = json.dumps({"features": {**EXAMPLE_FEATURES, "tenure": "5", "gender": "X"}}).encode()
    with pytest.raises(InvalidRequest) as fast:
        decoder.single(raw)
    with pytest.raises(InvalidRequest) as slow:
        StrictBodyParser(10).single(raw)
    assert fast.value.errors == slow.value.errors
    assert {e.field for e in fast.value.errors or []} == {"features.tenure", "features.gender"}


def test_every_dataset_row_takes_the_fast_path_with_the_encoders_rows(
    decoder: RequestDecoder, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    raw = json.dumps(prediction_bodies(dataset, len(dataset))).encode()
    assert len(msgspec.json.decode(raw, type=list[RequestStruct])) == len(dataset)  # type: ignore[valid-type]
    customer_ids, rows = decoder.batch(raw)
    assert customer_ids == dataset.customer_ids
    np.testing.assert_array_equal(rows, artifact.encoder.encode_columns(dataset.columns))


def test_batch_with_a_lax_value_takes_the_pydantic_path_and_encodes_the_same(
    decoder: RequestDecoder, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    bodies = prediction_bodies(dataset, 4)
    bodies[2]["features"]["senior_citizen"] = True  # pydantic accepts; msgspec does not
    customer_ids, rows = decoder.batch(json.dumps(bodies).encode())
    expected = artifact.encoder.encode_columns(dataset.subset(range(4)).columns)
    expected[2, FEATURE_NAMES.index("senior_citizen")] = 1.0
    assert customer_ids == dataset.customer_ids[:4]
    np.testing.assert_array_equal(rows, expected)


def test_batch_past_the_row_limit_is_payload_too_large(artifact: ModelArtifact) -> None:
    decoder = RequestDecoder(artifact.encoder, StrictBodyParser(max_batch_rows=2))
    raw = json.dumps([{"features": EXAMPLE_FEATURES}] * 3).encode()
    with pytest.raises(PayloadTooLarge):
        decoder.batch(raw)


def test_structs_mirror_the_pydantic_models() -> None:
    for struct, model in ((FeaturesStruct, CustomerFeatures), (RequestStruct, PredictRequest)):
        fields = {f.name: f.required for f in msgspec.structs.fields(struct)}
        assert fields == {n: i.is_required() for n, i in model.model_fields.items()}


def test_an_unknown_constraint_is_refused_rather_than_dropped() -> None:
    class WithMultiple(BaseModel):
        count: Annotated[int, Field(multiple_of=3)]

    with pytest.raises(TypeError, match="no msgspec equivalent"):
        _struct(WithMultiple, {})
    with pytest.raises(TypeError, match="no msgspec equivalent"):
        _msgspec_type(bytes, [])


def test_a_pattern_ends_at_the_end_of_the_string_as_in_pydantic() -> None:
    class WithPattern(BaseModel):
        code: Annotated[str, Field(pattern="^[A-Z]+$")]

    struct = _struct(WithPattern, {})

    assert msgspec.json.decode(b'{"code": "ABC"}', type=struct).code == "ABC"
    for refused in (b'{"code": "ABC\\n"}', b'{"code": "abc"}'):
        with pytest.raises(msgspec.ValidationError, match="regex"):
            msgspec.json.decode(refused, type=struct)
