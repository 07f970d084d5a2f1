"""CHURN_GZIP_LEVEL sets the zlib level of compressed answers, on the middleware's gzip and on
the Open Inference Protocol's own compression: the same bytes once inflated, smaller at 9."""

from __future__ import annotations

import gzip
import random
import zlib
from typing import Any

import orjson
import pytest
from starlette.types import Receive, Scope, Send

from churn_mlops.api.middleware import NegotiatedGZip
from churn_mlops.api.v2.wire import compress
from churn_mlops.settings import Settings

RANDOM = random.Random(5)
ANSWER = orjson.dumps(
    {
        "predictions": [
            {"customer_id": f"{RANDOM.randint(1000, 9999)}-X", "churn_probability": RANDOM.random()}
            for _ in range(2000)
        ]
    }
)


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


async def _gzipped(level: int) -> bytes:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict/batch",
        "headers": [(b"accept-encoding", b"gzip")],
    }
    await NegotiatedGZip(_answer, minimum_size=100, level=level)(scope, receive, send)
    assert (b"content-encoding", b"gzip") in sent[0]["headers"]
    return b"".join(message.get("body", b"") for message in sent[1:])


@pytest.mark.anyio
async def test_the_middleware_compresses_at_the_level_asked() -> None:
    fast, small = await _gzipped(1), await _gzipped(9)
    assert gzip.decompress(fast) == gzip.decompress(small) == ANSWER
    assert len(small) < len(fast)


def test_the_open_inference_protocol_compresses_at_the_level_asked() -> None:
    fast, encoding = compress(ANSWER, "gzip", 100, level=1)
    small, _ = compress(ANSWER, "gzip", 100, level=9)
    assert encoding == "gzip"
    assert zlib.decompress(fast, 31) == zlib.decompress(small, 31) == ANSWER
    assert len(small) < len(fast)


def test_the_default_level_is_1_and_the_range_is_zlibs() -> None:
    assert Settings().gzip_level == 1
    with pytest.raises(ValueError, match="gzip_level"):
        Settings(gzip_level=10)
