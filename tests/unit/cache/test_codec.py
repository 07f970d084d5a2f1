"""ValueCodec: compact JSON round trips exactly; anything else reads as a miss."""

from __future__ import annotations

import pickle

import orjson
import pytest

from churn_mlops.cache.codec import ValueCodec, is_cacheable

DIGEST = "0123456789abcdef0123456789abcdef"


def test_encoded_value_is_compact_json_naming_version_and_key() -> None:
    raw = ValueCodec("v1").encode(0.25, DIGEST)
    assert raw == b'{"p":0.25,"v":"v1","k":"0123456789abcdef0123456789abcdef"}'


@pytest.mark.parametrize("probability", [0.0, 1.0, 0.08546189030506895, 1e-300, 0.1 + 0.2])
def test_probability_round_trips_bit_for_bit(probability: float) -> None:
    codec = ValueCodec("v1")
    assert codec.decode(codec.encode(probability, DIGEST), DIGEST) == probability


def test_decode_accepts_str_as_well_as_bytes() -> None:
    codec = ValueCodec("v1")
    assert codec.decode(codec.encode(0.5, DIGEST).decode(), DIGEST) == 0.5


def test_pickled_value_is_refused() -> None:
    pickled = pickle.dumps({"p": 0.5, "v": "v1", "k": DIGEST})
    assert ValueCodec("v1").decode(pickled, DIGEST) is None


def test_value_of_another_model_version_is_refused() -> None:
    assert ValueCodec("v2").decode(ValueCodec("v1").encode(0.5, DIGEST), DIGEST) is None


def test_value_written_for_another_key_is_refused() -> None:
    codec = ValueCodec("v1")
    assert codec.decode(codec.encode(0.5, "f" * 32), DIGEST) is None


@pytest.mark.parametrize(
    "document",
    [
        {"p": "0.5", "v": "v1", "k": DIGEST},
        {"p": 1, "v": "v1", "k": DIGEST},
        {"p": True, "v": "v1", "k": DIGEST},
        {"p": None, "v": "v1", "k": DIGEST},
        {"p": -0.1, "v": "v1", "k": DIGEST},
        {"p": 1.5, "v": "v1", "k": DIGEST},
        {"p": 0.5, "v": "v1"},
        {"p": 0.5, "v": "v1", "k": DIGEST, "x": 1},
        {"probability": 0.5, "version": "v1", "key": DIGEST},
        [0.5, "v1", DIGEST],
        0.5,
        "0.5",
    ],
)
def test_foreign_json_is_refused(document: object) -> None:
    assert ValueCodec("v1").decode(orjson.dumps(document), DIGEST) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"p":NaN,"v":"v1","k":"' + DIGEST.encode() + b'"}',
        b'{"p":1e999,"v":"v1","k":"' + DIGEST.encode() + b'"}',
        b'{"p":0.5,"v":"v1","k":"' + DIGEST.encode() + b'"',
        b"\xff\xfe\x00",
        b'{"p":0.5,"v":"v1","k":"' + DIGEST.encode() + b'","pad":"' + b"x" * 300 + b'"}',
    ],
)
def test_malformed_bytes_are_refused(raw: bytes) -> None:
    assert ValueCodec("v1").decode(raw, DIGEST) is None


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(0.0, True), (1.0, True), (0.5, True), (float("nan"), False), (-0.01, False), (1.01, False)],
)
def test_only_probabilities_are_cacheable(probability: float, expected: bool) -> None:
    assert is_cacheable(probability) is expected
