"""Profiling tools: cProfile around a function or a block, and pyinstrument per request.

- `profile_function` / `profile_context`: cProfile, the top N functions by cumulative time,
  printed (to stderr by default) and returned as a `ProfileReport`. cProfile sees every Python
  call of the thread, so under an event loop it also counts other tasks that ran meanwhile.
- `RequestProfiler`: raw ASGI middleware answering `?profile=1` with the pyinstrument HTML
  report of that request instead of its response. Only installed when
  `CHURN_PROFILING_ENABLED` is on; whether a request may be profiled is the `authorize`
  callback's decision (the app asks for the admin scope).
"""

from __future__ import annotations

import cProfile
import functools
import inspect
import io
import pstats
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TextIO, TypeVar, cast, overload
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_P = ParamSpec("_P")
_R = TypeVar("_R")

DEFAULT_TOP = 20


@dataclass(frozen=True)
class FunctionCost:
    """One function's line of a cProfile report."""

    function: str
    """`file:line(name)`."""
    calls: int
    own_seconds: float
    cumulative_seconds: float


@dataclass
class ProfileReport:
    """A finished profile: the top functions and the printable text."""

    name: str
    top: list[FunctionCost] = field(default_factory=list)
    text: str = ""
    total_seconds: float = 0.0


def _report(profiler: cProfile.Profile, name: str, top: int) -> ProfileReport:
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer).sort_stats(pstats.SortKey.CUMULATIVE)
    stats.print_stats(top)
    raw = cast(dict[tuple[str, int, str], tuple[int, int, float, float, Any]], stats.stats)  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda item: item[1][3], reverse=True)[:top]
    costs = [
        FunctionCost(f"{file}:{line}({function})", calls, own, cumulative)
        for (file, line, function), (_, calls, own, cumulative, _) in rows
    ]
    total = float(getattr(stats, "total_tt", 0.0))
    return ProfileReport(name, costs, f"{name}\n{buffer.getvalue()}", total)


@contextmanager
def profile_context(
    name: str = "profile",
    *,
    top: int = DEFAULT_TOP,
    stream: TextIO | None = None,
    quiet: bool = False,
) -> Iterator[ProfileReport]:
    """Profile the block with cProfile; the yielded report is filled in when it ends and the
    top `top` functions by cumulative time are printed to `stream` (stderr) unless `quiet`."""
    report = ProfileReport(name)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield report
    finally:
        profiler.disable()
        finished = _report(profiler, name, top)
        report.top, report.text, report.total_seconds = (
            finished.top,
            finished.text,
            finished.total_seconds,
        )
        if not quiet:
            print(report.text, file=stream or sys.stderr)


@overload
def profile_function(func: Callable[_P, _R], /) -> Callable[_P, _R]: ...
@overload
def profile_function(
    *, top: int = DEFAULT_TOP, stream: TextIO | None = None
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...
def profile_function(
    func: Callable[_P, _R] | None = None,
    /,
    *,
    top: int = DEFAULT_TOP,
    stream: TextIO | None = None,
) -> Callable[_P, _R] | Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: profile every call of the function (sync or async) with cProfile and print the
    top functions by cumulative time. `@profile_function` or `@profile_function(top=10)`; the
    last call's report is kept on the wrapper as `last_report`."""

    def decorate(target: Callable[_P, _R]) -> Callable[_P, _R]:
        name = getattr(target, "__qualname__", repr(target))
        if inspect.iscoroutinefunction(target):
            coroutine_function = cast(Callable[_P, Awaitable[Any]], target)

            @functools.wraps(target)
            async def async_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                with profile_context(name, top=top, stream=stream) as report:
                    result = await coroutine_function(*args, **kwargs)
                async_wrapper.last_report = report  # type: ignore[attr-defined]
                return result

            return cast(Callable[_P, _R], async_wrapper)

        @functools.wraps(target)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with profile_context(name, top=top, stream=stream) as report:
                result = target(*args, **kwargs)
            wrapper.last_report = report  # type: ignore[attr-defined]
            return result

        return wrapper

    return decorate(func) if func is not None else decorate


# --- per-request profiling ---------------------------------------------------------------

Refusal = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, headers and body of the answer to a profiling request that is not allowed."""
Authorize = Callable[[Scope], Awaitable[Refusal | None]]


def wants_profile(query_string: bytes) -> bool:
    """`profile=1` (or true/yes) among the query parameters."""
    if b"profile" not in query_string:
        return False
    return any(
        name == "profile" and value.lower() in ("1", "true", "yes")
        for name, value in parse_qsl(query_string.decode("latin-1"))
    )


class RequestProfiler:
    """Answers `?profile=1` with the pyinstrument HTML report of the request (its own response
    is discarded; its status is in `X-Profiled-Status`), when `authorize` allows it."""

    def __init__(self, app: ASGIApp, authorize: Authorize, interval_seconds: float = 0.0001):
        self.app = app
        self.authorize = authorize
        self.interval_seconds = interval_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not wants_profile(scope.get("query_string", b"")):
            await self.app(scope, receive, send)
            return
        refusal = await self.authorize(scope)
        if refusal is not None:
            status, headers, body = refusal
            await _send(send, status, headers, body)
            return
        from pyinstrument import Profiler

        status = 0

        async def keep_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        profiler = Profiler(interval=self.interval_seconds, async_mode="enabled")
        profiler.start()
        try:
            await self.app(scope, receive, keep_status)
        finally:
            profiler.stop()
        html = profiler.output_html().encode()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"x-profiled-status", str(status).encode()),
            (b"cache-control", b"no-store"),
        ]
        await _send(send, 200, headers, html)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
