"""The shared rate limiter fails open: whatever Redis does (resets connections under load,
answers something that is not a bucket's reply), no request fails with anything but a 429 of
the worker's own bucket, and every decision is bounded by the Redis timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from churn_mlops.security.errors import RateLimited
from churn_mlops.security.ratelimit import RateLimiter
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class WrongRedis:
    """A server that speaks RESP but answers every script call with `reply` (a Redis-compatible
    proxy or server gone wrong); every other command gets +OK."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.port = 0
        self.scripts = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                parts = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    parts.append((await reader.readexactly(size + 2))[:-2])
                if parts[0].upper() in (b"EVALSHA", b"EVAL"):
                    self.scripts += 1
                    writer.write(self.reply)
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture(params=[b":1\r\n", b"$2\r\nok\r\n", b"*1\r\n:1\r\n", b"*2\r\n$1\r\nx\r\n:0\r\n"])
async def wrong_redis(request: pytest.FixtureRequest) -> AsyncIterator[WrongRedis]:
    server = WrongRedis(request.param)
    await server.start()
    yield server
    await server.close()


async def test_a_reply_that_is_not_a_buckets_falls_back_to_the_local_bucket(
    wrong_redis: WrongRedis,
) -> None:
    limiter = RateLimiter(
        0.001, 2, redis_url=f"redis://127.0.0.1:{wrong_redis.port}/0", timeout=0.5
    )
    try:
        await limiter.check("key:a")
        await limiter.check("key:a")  # within the back-off: the local bucket alone
        with pytest.raises(RateLimited):
            await limiter.check("key:a")
    finally:
        await limiter.close()
    assert wrong_redis.scripts == 1
    assert limiter.stats.failures == 1
    assert limiter.stats.last_error is not None


async def test_connection_resets_under_load_never_fail_a_request(redis_url: str) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    prefix = f"test-rl-{uuid.uuid4().hex[:12]}"
    limiter = RateLimiter(
        1e6, 1_000_000, redis_url=proxy.url, key_prefix=prefix, timeout=0.05, backoff_seconds=0.02
    )
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    stop = time.monotonic() + 3.0

    async def caller(n: int) -> None:
        nonlocal slowest
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                await limiter.check(f"key:{n % 4}")
                outcomes["allowed"] += 1
            except Exception as error:
                outcomes[type(error).__name__] += 1
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0)

    async def flap() -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(0.05)
            await proxy.reset()
            await asyncio.sleep(0.02)
            await proxy.pass_through()

    try:
        await asyncio.gather(flap(), *(caller(n) for n in range(50)))
    finally:
        await limiter.close()
        await proxy.close()
    assert set(outcomes) == {"allowed"}, outcomes
    assert limiter.stats.failures > 0  # the resets did reach the limiter
    assert slowest < 1.0
