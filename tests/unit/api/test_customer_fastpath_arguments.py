"""Which customer reads the raw endpoints answer themselves: exactly those FastAPI would
accept, with the same defaults; every other one goes on to FastAPI, which refuses it."""

from __future__ import annotations

from typing import Any

import pytest

from churn_mlops.api.customer_fastpath import (
    DEFAULT_PAGE,
    DEFAULT_RECENT,
    MAX_ID,
    detail_arguments,
    page_arguments,
)


def _scope(path: str, query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "query_string": query}


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/customers/7590-VHVEG", b"", ("7590-VHVEG", DEFAULT_RECENT)),
        ("/customers/7590-VHVEG", b"limit=1", ("7590-VHVEG", 1)),
        ("/customers/7590-VHVEG", b"limit=100", ("7590-VHVEG", 100)),
        ("/customers/Zoë ünïcode", b"limit=5", ("Zoë ünïcode", 5)),
        ("/customers/" + "x" * 64, b"", ("x" * 64, DEFAULT_RECENT)),
    ],
)
def test_a_valid_detail_request_is_answered_raw(
    path: str, query: bytes, expected: tuple[str, int]
) -> None:
    assert detail_arguments(_scope(path, query)) == expected


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/customers/", b""),  # no id
        ("/customers/" + "x" * 65, b""),  # longer than FastAPI's max_length
        ("/customers/A\x00B", b""),  # a control character
        ("/customers/A\x7fB", b""),
        ("/customers/A/predict", b""),  # another route
        ("/customers/A", b"limit=0"),  # out of range: FastAPI's 422
        ("/customers/A", b"limit=101"),
        ("/customers/A", b"limit=-1"),
        ("/customers/A", b"limit=abc"),
        ("/customers/A", b"limit="),
        ("/customers/A", b"limit=5&limit=6"),
        ("/customers/A", b"limit=5&extra=1"),  # FastAPI ignores it: let it
        ("/customers/A", b"limit=%35"),  # percent-encoded: FastAPI decodes
        ("/customerz/A", b""),
    ],
)
def test_every_other_detail_request_goes_to_fastapi(path: str, query: bytes) -> None:
    assert detail_arguments(_scope(path, query)) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", (None, DEFAULT_PAGE)),
        (b"limit=50", (None, 50)),
        (b"after=0", (0, DEFAULT_PAGE)),
        (b"after=123&limit=100", (123, 100)),
        (b"limit=1&after=9", (9, 1)),
        (f"after={MAX_ID}".encode(), (MAX_ID, DEFAULT_PAGE)),
    ],
)
def test_a_valid_page_request_is_answered_raw(
    query: bytes, expected: tuple[int | None, int]
) -> None:
    assert page_arguments(_scope("/customers", query)) == expected


@pytest.mark.parametrize(
    "query",
    [
        b"limit=0",
        b"limit=101",
        f"after={MAX_ID + 1}".encode(),  # past a bigint: FastAPI's 422
        b"after=-1",
        b"after=1&after=2",
        b"after=x",
        b"limit=5&",
        b"&limit=5",
        b"cursor=5",
    ],
)
def test_every_other_page_request_goes_to_fastapi(query: bytes) -> None:
    assert page_arguments(_scope("/customers", query)) is None
