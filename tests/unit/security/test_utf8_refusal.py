"""A body that is not UTF-8 is refused naming the string value that holds the bad byte."""

from __future__ import annotations

import pytest

from churn_mlops.core.errors import FieldError, InvalidRequest
from churn_mlops.security.limits import utf8_refusal

OVERLONG_SLASH = b"\xc0\xaf"
ENCODED_SURROGATE = b"\xed\xa0\x80"


def _refused(body: bytes) -> InvalidRequest:
    refusal = utf8_refusal(body)
    assert refusal is not None
    return refusal


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"customer_id": "a' + OVERLONG_SLASH + b'", "features": {}}', "customer_id"),
        (b'{"features": {"gender": "Fe\xffmale"}}', "features.gender"),
        (
            b'[{"customer_id": "ok"}, {"customer_id": "' + ENCODED_SURROGATE + b'"}]',
            "[1].customer_id",
        ),
        (b'{"name": "key\xe2\x82", "scopes": ["read"]}', "name"),
        (b'{"scopes": ["read", "wr\xfeite"]}', "scopes[1]"),
    ],
)
def test_names_the_string_value_holding_the_first_bad_byte(body: bytes, field: str) -> None:
    refusal = _refused(body)
    assert refusal.status == 422
    assert refusal.detail == f"1 field is invalid: {field}"
    assert refusal.errors is not None
    assert [error.field for error in refusal.errors] == [field]
    assert refusal.errors[0].reason.startswith("Not valid UTF-8 (byte ")


@pytest.mark.parametrize(
    "body",
    [
        b'{"cust\xffomer_id": "a"}',  # in a key
        b'{"tenure": 4\xff}',  # outside any string
        b"\xff",
        b'{"a": 1,, "b": "\xff"}',  # the JSON before the bad byte is already broken
        b'{"a": "x\\' + b"\xff" + b'"}',  # right after an escaping backslash
    ],
)
def test_names_the_body_when_no_string_value_holds_the_bad_byte(body: bytes) -> None:
    refusal = _refused(body)
    assert refusal.errors is not None
    assert [error.field for error in refusal.errors] == ["body"]


def test_gives_the_offset_of_the_first_bad_byte() -> None:
    body = b'{"customer_id": "ab\xff\xfe"}'
    assert _refused(body).errors == [
        FieldError(field="customer_id", reason="Not valid UTF-8 (byte 19)")
    ]


@pytest.mark.parametrize(
    "body",
    [b"", b'{"customer_id": "\xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82"}', b"not json, but UTF-8"],
)
def test_accepts_utf8(body: bytes) -> None:
    assert utf8_refusal(body) is None
