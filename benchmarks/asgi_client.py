"""Calling an ASGI app in this process without sockets: its lifespan run as a server runs it,
each request handed a copy of the lifespan's state.

Imports nothing from churn_mlops, so that `benchmarks.tree_probe` can drive the app of any
checkout, one from before today's layout included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "scheme": "http",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "root_path": "",
}


class InProcessApp:
    """An ASGI app whose lifespan runs in this process, called without sockets."""

    def __init__(self, app: Any, state: Mapping[str, Any], headers: Sequence[tuple[bytes, bytes]]):
        self.app = app
        self._state = dict(state)
        self._headers = [(b"host", b"127.0.0.1:8000"), *headers]

    async def call(self, method: str, target: str, body: bytes = b"") -> int:
        """One request to `target` (path and query); its status. Raises unless 2xx."""
        path, _, query = target.partition("?")
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Mapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        headers = self._headers
        if body:
            headers = [
                *headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        scope = {
            **_SCOPE,
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": headers,
            # As a server does: each request gets a copy of what the lifespan yielded.
            "state": dict(self._state),
        }
        await self.app(scope, receive, send)
        if not 200 <= status < 300:
            raise RuntimeError(f"in-process {method} {target} answered {status}")
        return status

    async def post(self, path: str, body: bytes) -> None:
        await self.call("POST", path, body)

    async def get(self, target: str) -> None:
        await self.call("GET", target)


@asynccontextmanager
async def serving(
    app: Any, headers: Sequence[tuple[bytes, bytes]] = ()
) -> AsyncIterator[InProcessApp]:
    """`app` with its lifespan running (started and stopped as a server would), sending
    `headers` (an API key, say) with every request."""
    async with app.router.lifespan_context(app) as state:
        yield InProcessApp(app, state or {}, headers)
