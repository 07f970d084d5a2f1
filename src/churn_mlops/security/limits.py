"""Request size limits: body bytes (by Content-Length and as received) and JSON nesting depth."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churn_mlops.core.errors import PayloadTooLarge

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
# Everything but the four brackets, deleted by bytes.translate (in C) before counting.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in `body` nest deeper than `limit` (strings do not count).

    Linear in the body; meant for bodies a fast decoder has already refused, before a slower
    parser sees them.
    """
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in (91, 123):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def too_deep(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The JSON body nests arrays and objects deeper than {limit} levels.")


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def declared_length(value: bytes) -> int | None:
    """A Content-Length header's value, None if it is not a number."""
    return int(value) if value.isdigit() else None


def counting_receive(receive: Receive, limit: int) -> Receive:
    """`receive` that raises PayloadTooLarge once the body passes `limit` bytes."""
    received = 0

    async def receive_counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(limit)
        return message

    return receive_counted


class RequestSizeLimit:
    """Pure ASGI middleware: 413 at once for a Content-Length past the limit. A body without one
    (chunked) is counted while it is read: past the limit, PayloadTooLarge is raised into the
    reader (the route's error handling answers it). A body with a Content-Length within the
    limit is not counted: the server's HTTP parser delivers no more than the declared length,
    and the usual request saves a wrapped `receive`."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, render: Callable[[PayloadTooLarge], bytes]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = declared_length(value)
                if length is None:
                    break
                if length > self.max_bytes:
                    await self._refuse(send, too_large(self.max_bytes))
                    return
                await self.app(scope, receive, send)
                return
        await self.app(scope, counting_receive(receive, self.max_bytes), send)

    async def _refuse(self, send: Send, error: PayloadTooLarge) -> None:
        body = self.render(error)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
