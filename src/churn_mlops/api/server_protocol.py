"""uvicorn's httptools protocol with a deadline on the request head.

uvicorn times out an idle keep-alive connection only after a response: a socket that connects
and never sends a byte, or sends half a request line, keeps its file descriptor forever. 1,100
such sockets left a worker with `RLIMIT_NOFILE=512` unable to accept anyone (issue 16, finding
3). Here every connection must deliver a complete request head within
`CHURN_HEADER_TIMEOUT_SECONDS` of connecting, or of its previous response, or it is closed; the
open connections per worker are bounded by `limit_concurrency` (`CHURN_MAX_CONNECTIONS_PER_WORKER`,
a 503 past it), which `serve` keeps below the process's descriptor limit.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from churn_mlops.settings import Settings


@cache
def header_timeout_seconds() -> float:
    """Read once per worker, from the environment the worker was started with."""
    return Settings().header_timeout_seconds


class HeadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request head does not arrive in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(
                header_timeout_seconds(), self._head_too_late
            )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        # Bytes of a new request on a kept-alive connection: its head has the same deadline
        # (uvicorn's keep-alive timer, which they cancel, would have closed an idle one).
        if self.cycle is not None and self.cycle.response_complete:
            self._arm_head_deadline()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)
