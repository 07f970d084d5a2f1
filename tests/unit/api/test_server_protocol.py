"""The served protocol sends each response in one write: head and body together, a HEAD
response's head when it completes, an interim `100 Continue` at once.

The protocol runs on a transport that records what is written, so each write the kernel would
see as a `send` call is counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from churn_mlops.api.server_protocol import HeadTimeoutProtocol

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        if self.closed:
            raise RuntimeError("written after close")
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _body(text: bytes, *, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": text, "more_body": more}


def _start(length: int | None = None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": 200, "headers": headers}


def _connected(app: Any) -> tuple[HeadTimeoutProtocol, RecordingTransport]:
    config = Config(app=app, lifespan="off", log_config=None)
    config.load()
    protocol = HeadTimeoutProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle(rounds: int) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def _serve(app: Any, request: bytes, *, settle: int = 20) -> RecordingTransport:
    protocol, transport = _connected(app)
    protocol.data_received(request)
    await _settle(settle)
    protocol.connection_lost(None)
    return transport


async def test_a_response_leaves_in_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(_start(5))
        await send(_body(b"hello"))

    transport = await _serve(app, GET)

    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 5" in head
    assert body == b"hello"


async def test_two_requests_on_one_connection_get_one_write_each() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(_start(2))
        await send(_body(b"ok"))

    transport = await _serve(app, GET + GET)

    assert [write.endswith(b"\r\n\r\nok") for write in transport.writes] == [True, True]


async def test_a_head_response_sends_its_head_when_it_completes() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(_start(5))
        await send(_body(b""))

    transport = await _serve(app, b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")

    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"\r\n\r\n")


async def test_a_streamed_response_sends_its_head_with_the_first_chunk_then_each_chunk() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(_start())
        await send(_body(b"one", more=True))
        await asyncio.sleep(0)
        await send(_body(b"two", more=True))
        await send(_body(b""))

    transport = await _serve(app, GET)

    assert len(transport.writes) == 3
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert transport.writes[1:] == [b"3\r\ntwo\r\n", b"0\r\n\r\n"]


async def test_a_client_waiting_for_100_continue_gets_it_before_the_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        await send(_start(len(message["body"])))
        await send(_body(message["body"]))

    protocol, transport = _connected(app)
    protocol.data_received(
        b"POST / HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    await _settle(5)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # not held back

    protocol.data_received(b"ping")
    await _settle(5)
    protocol.connection_lost(None)

    assert len(transport.writes) == 2  # the response itself still in one write
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[1].endswith(b"\r\n\r\nping")


async def test_an_app_failing_after_its_head_still_sends_the_head_before_closing() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(_start(5))
        raise RuntimeError("broken after the head")

    transport = await _serve(app, GET)

    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.closed
