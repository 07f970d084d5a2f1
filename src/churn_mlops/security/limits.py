"""Body checks: size limits (by Content-Length and as received, per route) and JSON only, the
shape of a JSON body measured in one compiled pass, and the UTF-8 check that names the string
at fault.

Every check is linear in the body and runs before a parser that builds values, so a hostile
body is refused for the cost of reading it once. The shape scan is a numba kernel that reads
each byte once, in order, whatever the body holds: strings of escaped quotes or backslashes,
`[[[[`, millions of small objects, one huge number (`tests/unit/security/test_limits_linear.py`
counts its reads). A regex that removed strings before counting brackets did not: from every
quote of an unterminated string it went back over the rest of the body.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic_core
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churn_mlops.core.errors import (
    FieldError,
    InvalidRequest,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    field_path,
    invalid_request_detail,
)
from churn_mlops.core.native import kernel

SMALL_BODY_BYTES = 16 * 1024
"""The largest body of a route that takes one small document: every route but the batch
(a login with the longest password, a prediction request, a key to create are all under 2 KB).
A parser then never sees megabytes where a kilobyte is expected; FastAPI decodes a route's
JSON body before its dependencies run, so before the caller is authenticated."""

_QUOTE, _BACKSLASH, _COLON, _COMMA = 34, 92, 58, 44
_OPENERS = (91, 123)  # [ {
_CLOSERS = (93, 125)  # ] }


@kernel("UniTuple(i8, 4)(u1[::1], i8)")
def _measure(data: Any, max_depth: int) -> tuple[int, int, int, int]:
    """One pass over the bytes of a JSON body: the deepest nesting, the structural bytes and the
    most members of one object, counted outside strings, and the longest string in bytes.

    Stops at the first bracket past `max_depth` or the first closing bracket with nothing open:
    a parser reads no further than either."""
    members = np.zeros(max_depth + 2, np.int64)
    depth = deepest = structural = widest = longest = 0
    inside = escaped = False
    start = 0
    for index in range(data.size):
        byte = data[index]
        if inside:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                inside = False
                longest = max(longest, index - start)
        elif byte == _QUOTE:
            inside = True
            start = index + 1
        elif byte == _COMMA:
            structural += 1
        elif byte == _COLON:
            structural += 1
            members[depth] += 1
            widest = max(widest, members[depth])
        elif byte == _OPENERS[0] or byte == _OPENERS[1]:
            structural += 1
            depth += 1
            if depth > deepest:
                deepest = depth
                if depth > max_depth:
                    break
            members[depth] = 0
        elif byte == _CLOSERS[0] or byte == _CLOSERS[1]:
            structural += 1
            depth -= 1
            if depth < 0:
                break
    if inside:
        longest = max(longest, data.size - start)
    return deepest, structural, widest, longest


@dataclass(frozen=True, slots=True)
class JsonShape:
    """What a parser would build from a body, measured without building it."""

    depth: int
    """Deepest nesting of arrays and objects (strings do not count)."""
    structural: int
    """Brackets, commas and colons outside strings: about two per value a parser makes."""
    widest: int
    """Most members of one object."""
    longest_string: int
    """Bytes of the longest string, escapes as sent."""


def json_shape(body: bytes, max_depth: int) -> JsonShape:
    """The shape of `body`, in one pass; a depth past `max_depth` ends the scan (and is all that
    is then known). The first call in a process compiles the kernel, or loads it from numba's
    disk cache: `StrictBodyParser` makes that call at start-up, not a request."""
    depth, structural, widest, longest = _measure(np.frombuffer(body, np.uint8), max_depth)
    return JsonShape(int(depth), int(structural), int(widest), int(longest))


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in `body` nest deeper than `limit` (strings do not count)."""
    return json_shape(body, limit).depth > limit


def too_deep(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The JSON body nests arrays and objects deeper than {limit} levels.")


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


# A character JSON strings may hold and bodies hardly do (a Unicode noncharacter), appended to
# the valid part of a body to find out whether that part ends inside a string value.
_MARK = "\uffff"
_MAX_FIELD_CHARS = 200


def utf8_refusal(body: bytes) -> InvalidRequest | None:
    """None if `body` is valid UTF-8 (strict: no overlong forms, no encoded surrogates);
    otherwise a 422 naming the string value that holds the first invalid byte, or `body`
    when that byte is not inside a string value (a key, a number) or the JSON before it is
    already broken. Linear: one decode, and one parse of the part before the byte."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        field = _open_string_field(body[: error.start])
        errors = [FieldError(field=field, reason=f"Not valid UTF-8 (byte {error.start})")]
        return InvalidRequest(invalid_request_detail(errors), errors)
    return None


def _open_string_field(valid_prefix: bytes) -> str:
    """The path of the string value `valid_prefix` ends inside, or "body"."""
    try:
        document = pydantic_core.from_json(
            valid_prefix + _MARK.encode(), allow_partial="trailing-strings"
        )
    except ValueError:
        return "body"
    path: list[str | int] = []
    node = document
    while node and isinstance(node, dict | list):
        if isinstance(node, dict):
            key = next(reversed(node))
            path.append(key)
            node = node[key]
        else:
            path.append(len(node) - 1)
            node = node[-1]
    # Only a value carries the mark: a parser drops a key it has not seen the end of.
    if not isinstance(node, str) or not node.endswith(_MARK):
        return "body"
    field = field_path(path)
    return field if field != "body" and len(field) <= _MAX_FIELD_CHARS else "body"


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


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON = b"application/json"
_FORM = b"application/x-www-form-urlencoded"


def declares_json(media_type: bytes, forms: bool = False) -> bool:
    """Whether a Content-Type value declares JSON: `application/json` or `application/*+json`
    (or, with `forms`, an HTML form), with no charset or UTF-8 (RFC 8259: JSON between systems
    is UTF-8)."""
    kind, _, parameters = media_type.partition(b";")
    kind = kind.strip().lower()
    json = kind == _JSON or (kind.startswith(b"application/") and kind.endswith(b"+json"))
    if not json and not (forms and kind == _FORM):
        return False
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset":
            return value.strip().strip(b'"').lower() in (b"utf-8", b"utf8")
    return True


class RequestBodyLimits:
    """Pure ASGI middleware: what a request body must be before anything reads it.

    - No larger than the limit of its path: `max_bytes` for `large_body_paths`, the smaller
      `small_max_bytes` for every other. A Content-Length past it is a 413 at once; a body
      without one (chunked) is counted while it is read, and past the limit PayloadTooLarge is
      raised into the reader (the route's error handling answers it). A body with a
      Content-Length within the limit is not counted: the server's HTTP parser delivers no
      more than the declared length, and the usual request saves a wrapped `receive`.
    - JSON (`declares_json`) if there is one (POST, PUT or PATCH with a Content-Length above
      0, or chunked), else a 415; the paths in `form_paths` take an HTML form too (the OAuth2
      password grant of the login). Browsers send text/plain, form and multipart bodies to
      another site without a CORS preflight ("simple" requests): refused here, unread.

    Both in one pass over the headers and one layer: a middleware of its own for the media
    type would cost a second pass and a second call on every request.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        render: Callable[[ServiceError], bytes],
        large_body_paths: Collection[str] = (),
        small_max_bytes: int = SMALL_BODY_BYTES,
        form_paths: Collection[str] = (),
        own_body_prefix: str | None = None,
    ) -> None:
        self.app = app
        self.own_body_prefix = own_body_prefix
        """Paths under it pass unchecked: their endpoints take any media type and enforce
        `max_bytes` themselves (the Open Inference Protocol's binary bodies)."""
        self.render = render
        self.small_max_bytes = min(small_max_bytes, max_bytes)
        self.limits = dict.fromkeys(large_body_paths, max_bytes)
        self.form_paths = frozenset(form_paths)
        json_only = UnsupportedMediaType("Send the body as JSON: Content-Type: application/json.")
        json_or_form = UnsupportedMediaType(
            "Send the body as JSON (Content-Type: application/json) or as a form "
            "(application/x-www-form-urlencoded)."
        )
        self._unsupported = {False: render(json_only), True: render(json_or_form)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.own_body_prefix is not None and path.startswith(self.own_body_prefix):
            await self.app(scope, receive, send)
            return
        declared = media_type = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type":
                if media_type is None:
                    media_type = value
            elif name == b"transfer-encoding":
                chunked = True
        limit = self.limits.get(path, self.small_max_bytes)
        length = None if declared is None else declared_length(declared)
        if length is not None and length > limit:
            error = too_large(limit)
            await self._refuse(send, error.status, self.render(error))
            return
        if (
            (chunked or (declared is not None and declared != b"0"))
            and media_type != _JSON
            and scope["method"] in _BODY_METHODS
        ):
            forms = path in self.form_paths
            if media_type is None or not declares_json(media_type, forms):
                await self._refuse(send, UnsupportedMediaType.status, self._unsupported[forms])
                return
        if length is None:
            receive = counting_receive(receive, limit)
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    # The body is not read, nor drained.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
