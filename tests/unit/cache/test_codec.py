"""ValueCodec: only values tagged with the secret for their key and version are read, exactly."""

from __future__ import annotations

import hmac
import pickle

import orjson
import pytest

from churn_mlops.cache.codec import TAG_BYTES, VALUE_BYTES, ValueCodec, is_cacheable
from tests.fixtures.cache_values import TEST_CACHE_SECRET, float_bytes, tagged, untagged

KEY = "churn:test:v1:0123456789abcdef0123456789abcdef"
OTHER_KEY = "churn:test:v1:ffffffffffffffffffffffffffffffff"
CODEC = ValueCodec("v1", TEST_CACHE_SECRET)


@pytest.mark.parametrize("secret", [b"k", TEST_CACHE_SECRET, b"x" * 64, b"y" * 65, b"z" * 200])
def test_tag_is_hmac_sha256_truncated(secret: bytes) -> None:
    message = b"v1\x00" + KEY.encode() + b"\x00" + float_bytes(0.25)
    expected = hmac.digest(secret, message, "sha256")[:TAG_BYTES]
    assert ValueCodec("v1", secret).tag(message) == expected


def test_value_is_the_tag_then_the_probability() -> None:
    raw = CODEC.encode(0.25, KEY)
    assert len(raw) == VALUE_BYTES
    assert raw == tagged(CODEC, KEY, float_bytes(0.25))


@pytest.mark.parametrize("probability", [0.0, 1.0, 0.08546189030506895, 1e-300, 0.1 + 0.2, 5e-324])
def test_probability_round_trips_bit_for_bit(probability: float) -> None:
    assert CODEC.decode(CODEC.encode(probability, KEY), KEY) == probability


def test_negative_zero_is_stored_as_zero() -> None:
    raw = CODEC.encode(-0.0, KEY)
    assert raw == CODEC.encode(0.0, KEY)
    assert str(CODEC.decode(raw, KEY)) == "0.0"


@pytest.mark.parametrize("forged", [0.987654321, 0.565, 0.0, -0.0, 1.0])
def test_well_formed_value_without_the_secret_is_refused(forged: float) -> None:
    assert CODEC.decode(untagged(float_bytes(forged)), KEY) is None
    assert CODEC.decode(ValueCodec("v1", b"another secret").encode(forged, KEY), KEY) is None


def test_value_written_for_another_key_is_refused() -> None:
    assert CODEC.decode(CODEC.encode(0.5, OTHER_KEY), KEY) is None


def test_value_of_another_model_version_is_refused() -> None:
    assert ValueCodec("v2", TEST_CACHE_SECRET).decode(CODEC.encode(0.5, KEY), KEY) is None


def test_value_whose_probability_was_changed_is_refused() -> None:
    raw = bytearray(CODEC.encode(0.5, KEY))
    raw[-2] ^= 0x01  # another float, the tag unchanged
    assert CODEC.decode(bytes(raw), KEY) is None


@pytest.mark.parametrize(
    "probability",
    [float("nan"), -float("nan"), float("inf"), -float("inf"), -0.0, -1e-300, 1.0000000000000002],
    ids=["nan", "negative-nan", "inf", "-inf", "negative-zero", "negative", "above-one"],
)
def test_tagged_value_that_is_no_probability_is_refused(probability: float) -> None:
    assert CODEC.decode(tagged(CODEC, KEY, float_bytes(probability)), KEY) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"0.5",
        b"not json",
        orjson.dumps({"p": 0.5, "v": "v1", "k": KEY[-32:]}),
        pickle.dumps({"p": 0.5, "v": "v1", "k": KEY[-32:]}),
        b"\xff" * VALUE_BYTES,
        b"\x00" * (VALUE_BYTES - 1),
        b"\x00" * (VALUE_BYTES + 1),
    ],
    ids=["empty", "bare-number", "text", "earlier-json", "pickle", "ones", "short", "long"],
)
def test_malformed_bytes_are_refused(raw: bytes) -> None:
    assert CODEC.decode(raw, KEY) is None


def test_codec_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        ValueCodec("v1", b"")


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(0.0, True), (1.0, True), (0.5, True), (float("nan"), False), (-0.01, False), (1.01, False)],
)
def test_only_probabilities_are_cacheable(probability: float, expected: bool) -> None:
    assert is_cacheable(probability) is expected
