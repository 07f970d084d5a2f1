"""RequestBodyLimits driven with raw ASGI messages: a body within its path's limit, and JSON."""

from __future__ import annotations

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from churn_mlops.api.errors import problem_bytes
from churn_mlops.core.errors import PayloadTooLarge
from churn_mlops.security.limits import SMALL_BODY_BYTES, RequestBodyLimits, declares_json

MAX_BYTES = 1024 * 1024
BATCH = "/predict/batch"
LOGIN = "/auth/login"
JSON = (b"content-type", b"application/json")


async def _reads_the_body(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read"})


async def _call(
    headers: list[tuple[bytes, bytes]],
    path: str = "/predict",
    method: str = "POST",
    size: int = 42,
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """(status, body, response headers) of one request whose body is `size` bytes."""
    limits = RequestBodyLimits(
        _reads_the_body,
        max_bytes=MAX_BYTES,
        render=problem_bytes,
        large_body_paths={BATCH},
        form_paths={LOGIN},
    )
    scope: Scope = {"type": "http", "method": method, "path": path, "headers": headers}
    chunks = [b" " * 4096] * (size // 4096) + [b" " * (size % 4096)]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": chunks.pop(), "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await limits(scope, receive, send)
    except PayloadTooLarge as error:  # raised into the reader of a counted body
        return error.status, problem_bytes(error), []
    return sent[0]["status"], sent[-1]["body"], sent[0]["headers"]


def _declared(size: int, *headers: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"testserver"), (b"content-length", str(size).encode()), *headers]


CHUNKED = [(b"transfer-encoding", b"chunked")]


# --------------------------------------------------------------------------- sizes


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_small_body_route_refuses_past_the_small_limit(declared: bool) -> None:
    size = SMALL_BODY_BYTES + 1
    headers = _declared(size, JSON) if declared else [*CHUNKED, JSON]
    status, body, _ = await _call(headers, size=size)
    assert status == 413
    assert orjson.loads(body)["detail"] == (
        f"The request body is larger than {SMALL_BODY_BYTES} bytes."
    )


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_the_batch_takes_bodies_up_to_the_request_limit(declared: bool) -> None:
    for size, status in ((MAX_BYTES, 200), (MAX_BYTES + 1, 413)):
        headers = _declared(size, JSON) if declared else [*CHUNKED, JSON]
        assert (await _call(headers, BATCH, size=size))[0] == status


@pytest.mark.anyio
async def test_a_small_body_within_its_limit_is_read() -> None:
    status, body, _ = await _call(_declared(SMALL_BODY_BYTES, JSON), size=SMALL_BODY_BYTES)
    assert (status, body) == (200, b"read")


@pytest.mark.anyio
async def test_a_declared_size_past_the_limit_is_413_before_the_media_type() -> None:
    status, _, headers = await _call(_declared(MAX_BYTES + 1, (b"content-type", b"text/plain")))
    assert status == 413
    assert (b"connection", b"close") in headers


def test_the_small_limit_never_exceeds_the_request_limit() -> None:
    limits = RequestBodyLimits(_reads_the_body, max_bytes=2048, render=problem_bytes)
    assert limits.small_max_bytes == 2048


# --------------------------------------------------------------------------- media types

REFUSED = [
    b"text/plain",
    b"text/plain; charset=utf-8",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x",
    b"application/xml",
    b"text/json",
    b"application/jsonx",
    b"application/json; charset=latin-1",
    b"",
]
ACCEPTED = [
    b"application/json",
    b"Application/JSON",
    b"application/json; charset=utf-8",
    b'application/json;charset="UTF-8"',
    b"application/problem+json",
    b"application/vnd.churn+json; version=1",
]


@pytest.mark.parametrize("media_type", REFUSED)
def test_declares_json_refuses(media_type: bytes) -> None:
    assert not declares_json(media_type)


@pytest.mark.parametrize("media_type", ACCEPTED)
def test_declares_json_accepts(media_type: bytes) -> None:
    assert declares_json(media_type)


def test_declares_json_takes_a_form_where_asked() -> None:
    form = b"application/x-www-form-urlencoded"
    assert declares_json(form, forms=True)
    assert not declares_json(b"text/plain", forms=True)


def _typed(media_type: bytes | None) -> list[tuple[bytes, bytes]]:
    return _declared(42) if media_type is None else _declared(42, (b"content-type", media_type))


@pytest.mark.anyio
@pytest.mark.parametrize("media_type", [*REFUSED, None], ids=str)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_body_not_declared_json_is_415_unread(
    media_type: bytes | None, method: str
) -> None:
    status, body, headers = await _call(_typed(media_type), method=method)
    assert status == 415
    assert (b"content-type", b"application/problem+json") in headers
    assert (b"connection", b"close") in headers
    assert orjson.loads(body) == {
        "type": "about:blank",
        "title": "Unsupported Media Type",
        "status": 415,
        "detail": "Send the body as JSON: Content-Type: application/json.",
    }


@pytest.mark.anyio
async def test_a_chunked_body_without_a_content_type_is_415() -> None:
    assert (await _call(CHUNKED))[0] == 415


@pytest.mark.anyio
@pytest.mark.parametrize("media_type", ACCEPTED)
async def test_a_json_body_is_read(media_type: bytes) -> None:
    status, body, _ = await _call(_typed(media_type))
    assert (status, body) == (200, b"read")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"content-length", b"0")],
        [(b"content-length", b"0"), (b"content-type", b"text/plain")],
    ],
)
async def test_a_request_without_a_body_needs_no_content_type(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert (await _call(headers, size=0))[0] == 200


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD", "OPTIONS"])
async def test_other_methods_are_not_checked(method: str) -> None:
    assert (await _call(_typed(b"text/plain"), method=method))[0] == 200


@pytest.mark.anyio
async def test_the_login_takes_a_form_too() -> None:
    form = await _call(_typed(b"application/x-www-form-urlencoded"), LOGIN)
    text = await _call(_typed(b"text/plain"), LOGIN)
    assert form[0] == 200
    assert text[0] == 415
    assert orjson.loads(text[1])["detail"] == (
        "Send the body as JSON (Content-Type: application/json) or as a form "
        "(application/x-www-form-urlencoded)."
    )


@pytest.mark.anyio
async def test_the_first_content_type_counts() -> None:
    headers = [*_typed(b"text/plain"), (b"content-type", b"application/json")]
    assert (await _call(headers))[0] == 415
