"""Structured JSON logs (structlog) carrying each request's id.

Every record, from our stdlib loggers, uvicorn's or structlog's, goes through one
`structlog.stdlib.ProcessorFormatter` on the root handler and comes out as one JSON object per
line: timestamp (UTC, ISO 8601), level, logger, event, the request id of the request it was
logged in (when there is one) and any extra keys. Keys that could carry a secret or a customer's
features are replaced by "[redacted]" before rendering.

The request id is a `ContextVar` set by the request middleware: uvicorn answers each request in
its own task, with its own copy of the context, so the id follows everything that request logs
and costs one `ContextVar.set` (under 0.1 us) on the hot path.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REQUEST_ID_HEADER = b"x-request-id"
request_id_var: ContextVar[bytes | None] = ContextVar("churn_request_id", default=None)

# A client's id is kept when it is short and plain (it lands in logs and a response header).
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")

# Keys whose values never reach a log line.
REDACTED_KEYS = frozenset(
    {
        "password",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "api_key",
        "x-api-key",
        "secret",
        "jwt_secret",
        "features",
        "body",
    }
)
REDACTED = "[redacted]"


class RequestIds:
    """Request ids for requests that come without a usable `X-Request-ID`.

    A random per-process prefix and a counter: unique across workers and pods, and about ten
    times cheaper than a uuid4 (0.13 us against 2.2 us measured with timeit).
    """

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode()
        self._counter = itertools.count(1)

    def new(self) -> bytes:
        return b"%s-%x" % (self._prefix, next(self._counter))

    def accept(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The client's `X-Request-ID` if it is valid, else a new id."""
        for name, value in headers:
            if name == REQUEST_ID_HEADER:
                if _VALID_REQUEST_ID.fullmatch(value):
                    return value
                break
        return self.new()


def add_request_id(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None and "request_id" not in event:
        event["request_id"] = request_id.decode("ascii", "replace")
    return event


def redact_secrets(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    _redact(event)
    return event


def _redact(mapping: MutableMapping[str, Any]) -> None:
    for key, value in mapping.items():
        if key.lower() in REDACTED_KEYS:
            mapping[key] = REDACTED
        elif isinstance(value, MutableMapping):
            _redact(value)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_id,
        redact_secrets,
    ]


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Send every log record to stderr as JSON (or, with `json=False`, as aligned text).

    Idempotent: replaces the root handlers, and makes uvicorn's loggers propagate to the root
    instead of writing with their own format.
    """
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        if uvicorn_logger.handlers:
            # Configured by uvicorn's own log_config: write through ours instead. (A switched-off
            # access log has no handler and does not propagate: it stays off.)
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing through the stdlib logger `name`."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
