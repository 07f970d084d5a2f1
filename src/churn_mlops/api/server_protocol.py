"""uvicorn's httptools protocol with a deadline on the request head.

uvicorn times out an idle keep-alive connection only after a response: a socket that connects
and never sends a byte, or sends half a request line, keeps its file descriptor forever. 1,100
such sockets left a worker with `RLIMIT_NOFILE=512` unable to accept anyone (issue 16, finding
3). Here every connection must deliver a complete request head within
`CHURN_HEADER_TIMEOUT_SECONDS` of connecting, or of its previous response, or it is closed; the
open connections per worker are bounded by `limit_concurrency` (`CHURN_MAX_CONNECTIONS_PER_WORKER`,
a 503 past it), which `serve` keeps below the process's descriptor limit.

uvicorn also writes a response's head and its body apart: two `send` calls and two TCP segments
per response, which a profile of the production configuration found to be 28 % of a worker's
samples. Here the head waits for the body and both leave in one write (`OneWritePerResponse`).
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from churn_mlops.settings import Settings


@cache
def header_timeout_seconds() -> float:
    """Read once per worker, from the environment the worker was started with."""
    return Settings().header_timeout_seconds


class OneWritePerResponse:
    """A connection's transport that holds a response's head back until its first body bytes,
    so that the two leave in one write.

    The protocol arms it when a response's task starts. A response with no body write (HEAD)
    sends its head when it completes; a closing connection sends what it holds first.
    """

    __slots__ = ("_held", "_transport", "holding")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""
        self.holding = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # An interim response ("HTTP/1.1 100 Continue") goes at once: the client waits for it.
        if self.holding and data[9:10] != b"1":
            self.holding = False
            self._held = bytes(data)
            return
        if self._held:
            data, self._held = self._held + data, b""
        self._transport.write(data)

    def flush(self) -> None:
        """Send what is held, unless the connection is going."""
        self.holding = False
        if self._held:
            held, self._held = self._held, b""
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        # Flow control and the rest of the transport's interface, as they are.
        return getattr(self._transport, name)


class HeadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request head does not arrive in time
    and sends each response in one write."""

    transport: OneWritePerResponse  # type: ignore[assignment]

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
        super().connection_made(OneWritePerResponse(transport))  # type: ignore[arg-type]
        self._arm_head_deadline()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self.transport.holding = True
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        self.transport.flush()  # a response without a body write (HEAD) sends its head here
        super().on_response_complete()

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
