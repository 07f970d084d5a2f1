"""L2: Redis through redis-py's asyncio client (hiredis parser), shared by every worker and pod.

Fail-open by construction: every call runs under its own `asyncio.timeout` and behind a
`CircuitBreaker`; a timeout, a refused or reset connection, an error reply, a reply that is not
what the command answers, or an open breaker all come back as "unavailable" (None or False),
never as an exception, so a prediction never waits for Redis longer than the timeout and never
fails because of it. What a call returns is checked inside the call too: redis-py hands MGET's
reply over unparsed, and one of another shape (an integer, a list of another length or of
non-strings, from a proxy or server out of protocol) would raise in every lookup waiting for it
and answer 500; it is a failed call (`UnexpectedReply`) instead
(`tests/faults/test_redis_out_of_protocol.py`). Connections reset, cut mid-reply or left
half-open under load reach no caller (`tests/faults/test_redis_chaos.py`).

Replies can never reach the wrong caller. When a command is cancelled (our timeout, or the
request that awaited it going away), redis-py 8 closes the connection it was using: both
`Connection.send_packed_command` and `Connection.read_response` call `disconnect(nowait=True)` on
any BaseException, CancelledError included (the fix for CVE-2023-28858/28859), and a pipeline
reads its replies through the same `read_response`. The pool also refuses to hand out a
connection with unread bytes (`ensure_connection` checks `can_read` and reconnects). The value
format adds an end-to-end check on top: every value's tag covers the key it was written for
(see `codec.py`), so even a reply for another key would be a counted miss, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError, RedisError, ResponseError

from churn_mlops.cache.breaker import BreakerStats, CircuitBreaker

logger = logging.getLogger("churn_mlops.cache")

T = TypeVar("T")

# One command writes a chunk of keys, each with its own expiry (MSET cannot set expiries). A Lua
# loop costs redis-py one packed command and one reply instead of one per key: writing 10,000
# keys took about 60 ms of event-loop time against 370 ms for a pipeline of SET ... PX (timed
# around `Redis.eval` and `Pipeline.execute` against the local Redis 7, on 2 busy cores).
_SET_MANY_SCRIPT = (
    "local ttl = ARGV[1] "
    "for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ttl) end "
    "return #KEYS"
)
_SCAN_COUNT = 1000


@dataclass(frozen=True)
class RedisStoreStats:
    calls: int
    """Calls sent to Redis (not counting those the breaker refused)."""
    timeouts: int
    errors: int
    """Failed calls other than timeouts: refused, reset, error replies."""
    saturated: int
    """Calls not sent because every pooled connection was busy (not counted as failures)."""
    breaker: BreakerStats


class RedisStore:
    """Bytes values in Redis, read and written in bulk, failing open.

    Arguments (defaults in brackets):

    - `url`: a `redis://` or `rediss://` URL (`unix://` works too).
    - `read_timeout` [0.005 s]: budget of one read command, from taking a pooled connection
      (connecting if need be) to the parsed reply; a bulk read of k chunks gets k times it.
    - `write_timeout` [0.02 s]: the same for one write command; writes run off the response
      path, so they may take a little longer.
    - `admin_timeout` [2 s]: budget of each SCAN or UNLINK while clearing.
    - `keys_per_command` [256]: keys per MGET or write command; a bulk call of more keys sends
      several commands in one pipelined round trip, so that Redis, single-threaded, serves other
      clients between them.
    - `max_connections` [32]: pooled connections; a call that finds them all busy is a miss at
      once (counted as `saturated`), not a wait.
    - `failure_threshold` [5], `cooldown_seconds` [5 s]: the circuit breaker opens after this
      many consecutive failed calls, and probes Redis again with one call after the cool-down.
    - `clock`: monotonic seconds, for the breaker.
    """

    def __init__(
        self,
        url: str,
        *,
        read_timeout: float = 0.005,
        write_timeout: float = 0.02,
        admin_timeout: float = 2.0,
        keys_per_command: int = 256,
        max_connections: int = 32,
        failure_threshold: int = 5,
        cooldown_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(read_timeout, write_timeout, admin_timeout) <= 0:
            raise ValueError("timeouts must be > 0")
        if keys_per_command < 1 or max_connections < 1:
            raise ValueError("keys_per_command and max_connections must be >= 1")
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.admin_timeout = admin_timeout
        self.keys_per_command = keys_per_command
        self._client = Redis.from_url(
            url,
            # RESP2 and no CLIENT SETINFO: a new connection sends no handshake round trip
            # before the command (RESP3 would cost a HELLO), which matters with a 5 ms budget.
            protocol=2,
            driver_info=None,
            # Never retry: a retry would spend the budget of a call that is already late; the
            # breaker decides when Redis is tried again.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            # Backstops only: every call is bounded by its own asyncio.timeout, which is shorter.
            socket_timeout=admin_timeout,
            socket_connect_timeout=admin_timeout,
        )
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        self.breaker = CircuitBreaker(
            f"Redis cache at {where}",
            failure_threshold=failure_threshold,
            cooldown_seconds=cooldown_seconds,
            clock=clock,
        )
        self._closed = False
        self._calls = 0
        self._timeouts = 0
        self._errors = 0
        self._saturated = 0
        self._unexpected: set[type[Exception]] = set()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The stored values of `keys` in order (None where absent), or None if Redis could
        not be asked or did not answer in time."""
        if not keys:
            return []
        chunks = self._chunks(keys)
        return await self._call(self.read_timeout * len(chunks), lambda: self._mget(chunks))

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> bool:
        """Store every (key, value) for `ttl_seconds`; False if Redis could not take them."""
        if not items:
            return True
        ttl_ms = max(1, round(ttl_seconds * 1000))
        chunks = self._chunks(items)
        written = await self._call(
            self.write_timeout * len(chunks), lambda: self._set_chunks(chunks, ttl_ms)
        )
        return written is not None

    async def delete_matching(self, pattern: str) -> int | None:
        """UNLINK every key matching the SCAN `pattern`; how many were removed, or None if
        Redis failed part-way (some keys may be gone)."""
        removed = 0
        cursor = 0
        while True:
            page = await self._call(
                self.admin_timeout,
                partial(self._client.scan, cursor=cursor, match=pattern, count=_SCAN_COUNT),
            )
            if page is None:
                return None
            cursor, keys = page
            if keys:
                unlinked = await self._call(self.admin_timeout, partial(self._unlink, keys))
                if unlinked is None:
                    return None
                removed += unlinked
            if cursor == 0:
                return removed

    def stats(self) -> RedisStoreStats:
        return RedisStoreStats(
            calls=self._calls,
            timeouts=self._timeouts,
            errors=self._errors,
            saturated=self._saturated,
            breaker=self.breaker.stats(),
        )

    async def close(self) -> None:
        """Close every pooled connection; later calls are refused (unavailable)."""
        self._closed = True
        try:
            await self._client.aclose()
        except Exception as error:  # at shutdown a dropped connection has nothing to release
            logger.debug("cache: closing Redis raised %r", error)

    async def _call(self, budget: float, operation: Callable[[], Awaitable[T]]) -> T | None:
        if self._closed or not self.breaker.allow():
            return None
        self._calls += 1
        try:
            async with asyncio.timeout(budget):
                result = await operation()
        except TimeoutError:  # asyncio.timeout's; redis-py's own TimeoutError is a RedisError
            self._timeouts += 1
            self.breaker.record_failure(f"no reply within {budget * 1000:.0f} ms")
            return None
        except MaxConnectionsError:
            self._saturated += 1
            self.breaker.release()
            return None
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except (RedisError, OSError) as error:
            self._errors += 1
            self.breaker.record_failure(f"{type(error).__name__}: {error}")
            return None
        except Exception as error:
            self._errors += 1
            if _closed_transport(error):
                self.breaker.record_failure(f"connection reset: {error}")
                return None
            # Not an error Redis reports, but a cache must not fail a prediction either way.
            self.breaker.record_failure(f"unexpected {type(error).__name__}: {error}")
            if type(error) not in self._unexpected:  # once per kind, not per request
                self._unexpected.add(type(error))
                logger.exception("unexpected error from the Redis client; counted from now on")
            return None
        self.breaker.record_success()
        return result

    def _chunks(self, items: Sequence[T]) -> list[Sequence[T]]:
        size = self.keys_per_command
        return [items[start : start + size] for start in range(0, len(items), size)]

    async def _mget(self, chunks: list[Sequence[str]]) -> list[bytes | None]:
        if len(chunks) == 1:
            return _mget_values(await self._client.mget(chunks[0]), len(chunks[0]))
        pipeline = self._client.pipeline(transaction=False)
        for chunk in chunks:
            pipeline.mget(chunk)
        replies = await pipeline.execute()
        if len(replies) != len(chunks):
            raise UnexpectedReply(f"{len(replies)} replies to {len(chunks)} MGETs")
        values: list[bytes | None] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            values += _mget_values(reply, len(chunk))
        return values

    async def _set_chunks(self, chunks: list[Sequence[tuple[str, bytes]]], ttl_ms: int) -> int:
        if len(chunks) == 1:
            chunk = chunks[0]
            return int(
                await self._client.eval(_SET_MANY_SCRIPT, len(chunk), *_script_args(chunk, ttl_ms))
            )
        pipeline = self._client.pipeline(transaction=False)
        for chunk in chunks:
            pipeline.eval(_SET_MANY_SCRIPT, len(chunk), *_script_args(chunk, ttl_ms))
        replies = await pipeline.execute()
        return sum(int(reply) for reply in replies)

    async def _unlink(self, keys: Sequence[bytes | str]) -> int:
        return int(await self._client.unlink(*keys))


def _closed_transport(error: Exception) -> bool:
    """Whether `error` is uvloop's way of saying the connection is gone: writing to a transport
    the peer reset while the connection sat in the pool raises RuntimeError("... the handler is
    closed"), not an OSError, and redis-py lets it through. A connection failure like any other,
    not a client error to log (`tests/faults/test_redis_chaos.py`)."""
    return isinstance(error, RuntimeError) and "handler is closed" in str(error)


class UnexpectedReply(ResponseError):
    """Redis (or whatever answers in its place) sent a reply the command never gives."""


def _mget_values(reply: object, count: int) -> list[bytes | None]:
    """MGET's reply to `count` keys: one bytes value (decode_responses is off) or None each."""
    if type(reply) is not list or len(reply) != count:
        shape = f"{len(reply)} items" if type(reply) is list else type(reply).__name__
        raise UnexpectedReply(f"MGET of {count} keys answered {shape}")
    for value in reply:
        if value is not None and type(value) is not bytes:
            raise UnexpectedReply(f"MGET answered a {type(value).__name__} among its values")
    return cast(list[bytes | None], reply)


def _script_args(chunk: Sequence[tuple[str, bytes]], ttl_ms: int) -> list[int | str | bytes]:
    """EVAL's KEYS and ARGV: the keys, then the expiry and the values in key order."""
    return [*(key for key, _ in chunk), ttl_ms, *(value for _, value in chunk)]
