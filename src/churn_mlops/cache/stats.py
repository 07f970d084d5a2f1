"""What the prediction cache reports: its counters and the snapshots `GET /cache/stats` shows.

The counters are plain attributes bumped in place (a slotted object and no lock: one cache
belongs to one event loop). A snapshot is a frozen dataclass built from them and from the parts
that keep counts of their own: the LRU, the Redis store and its breaker, the write buffer and
the read policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from churn_mlops.cache.breaker import BreakerState
from churn_mlops.cache.read_policy import ReadPolicyName

if TYPE_CHECKING:
    from churn_mlops.cache.memory import LruTtlCache
    from churn_mlops.cache.read_policy import L2ReadPolicy
    from churn_mlops.cache.redis_store import RedisStoreStats
    from churn_mlops.cache.write_behind import L2WriteBuffer


class CacheCounters:
    """Events of one cache since it was built."""

    __slots__ = (
        "computed",
        "joined",
        "l2_corrupt",
        "l2_hits",
        "l2_misses",
        "l2_unavailable",
        "uncacheable",
    )

    def __init__(self) -> None:
        self.computed = 0
        """Answers computed by the model through the cache."""
        self.joined = 0
        """Lookups that waited for an identical one already in flight."""
        self.uncacheable = 0
        """Computed answers not stored because they were not a probability in 0..1."""
        self.l2_hits = 0
        self.l2_misses = 0
        """Keys read from L2 and not served: absent, corrupt or Redis unavailable."""
        self.l2_corrupt = 0
        """Values refused: not written by this service for their key and model version (the
        tag does not verify), or holding no probability in [0, 1]."""
        self.l2_unavailable = 0
        """Keys not looked up because Redis failed, timed out or the breaker was open."""


@dataclass(frozen=True)
class L1Stats:
    hits: int
    misses: int
    size: int
    capacity: int
    ttl_seconds: float
    evictions: int
    expired: int


@dataclass(frozen=True)
class L2Stats:
    enabled: bool
    hits: int
    misses: int
    """Keys looked up and not served: absent, corrupt or Redis unavailable."""
    corrupt: int
    """Values refused, read as misses: not written by this service for their key and model
    version (planted, another secret, another key or version, damaged: the tag does not
    verify), or holding no probability in [0, 1]. Exported as `churn_cache_rejected_total`."""
    unavailable: int
    """Keys not looked up because Redis failed, timed out or the breaker was open."""
    ttl_seconds: float
    pending_writes: int
    written: int
    failed_writes: int
    """Values that did not reach Redis (error, timeout, breaker open)."""
    dropped_writes: int
    """Values never sent because `max_pending_writes` were already waiting."""
    breaker_state: BreakerState | None
    breaker_outages: int
    breaker_failures: int
    breaker_short_circuited: int
    last_error: str | None
    calls: int
    timeouts: int
    errors: int
    saturated: int
    read_policy: ReadPolicyName
    """`adaptive`: read L2 on an L1 miss only where the read pays; `always`: on every miss."""
    reads_pay: bool
    """Whether, by the latest measurements, an L2 read saves more time than it costs."""
    skipped_reads: int
    """L1 misses computed without reading L2, because reads did not pay."""
    probe_reads: int
    """L2 reads made while reads did not pay, to measure again."""
    recent_hit_rate: float
    """Share of keys read from L2 that were there, over about the last 64."""
    read_ms: float
    """Smoothed wall time of one L2 read."""
    compute_ms: float
    """Smoothed wall time of one computed miss (batcher wait and model call)."""


@dataclass(frozen=True)
class CacheStats:
    model_version: str
    hit_rate: float
    """Lookups answered by L1 or L2, over all lookups (0 before the first)."""
    computed: int
    """Answers computed by the model through the cache."""
    joined: int
    """Lookups that waited for an identical one already in flight instead of computing."""
    uncacheable: int
    """Computed answers not stored because they were not a probability in 0..1."""
    l1: L1Stats
    l2: L2Stats

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClearResult:
    l1_removed: int
    l2_removed: int | None
    """Keys removed from Redis; None if L2 is off or Redis could not be cleared."""


def cache_stats(
    model_version: str,
    counters: CacheCounters,
    l1: LruTtlCache[bytes, float],
    policy: L2ReadPolicy,
    l2_ttl_seconds: float,
    store: RedisStoreStats | None,
    writes: L2WriteBuffer | None,
) -> CacheStats:
    """A snapshot of one cache; `store` and `writes` are None when L2 is off."""
    lookups = l1.hits + l1.misses
    return CacheStats(
        model_version=model_version,
        hit_rate=(l1.hits + counters.l2_hits) / lookups if lookups else 0.0,
        computed=counters.computed,
        joined=counters.joined,
        uncacheable=counters.uncacheable,
        l1=L1Stats(
            hits=l1.hits,
            misses=l1.misses,
            size=len(l1),
            capacity=l1.capacity,
            ttl_seconds=l1.ttl,
            evictions=l1.evictions,
            expired=l1.expired,
        ),
        l2=_l2_stats(counters, policy, l2_ttl_seconds, store, writes),
    )


def _l2_stats(
    counters: CacheCounters,
    policy: L2ReadPolicy,
    ttl_seconds: float,
    store: RedisStoreStats | None,
    writes: L2WriteBuffer | None,
) -> L2Stats:
    breaker = store.breaker if store is not None else None
    return L2Stats(
        enabled=store is not None,
        hits=counters.l2_hits,
        misses=counters.l2_misses,
        corrupt=counters.l2_corrupt,
        unavailable=counters.l2_unavailable,
        ttl_seconds=ttl_seconds,
        pending_writes=writes.pending if writes is not None else 0,
        written=writes.written if writes is not None else 0,
        failed_writes=writes.failed if writes is not None else 0,
        dropped_writes=writes.dropped if writes is not None else 0,
        breaker_state=breaker.state if breaker is not None else None,
        breaker_outages=breaker.outages if breaker is not None else 0,
        breaker_failures=breaker.failures if breaker is not None else 0,
        breaker_short_circuited=breaker.short_circuited if breaker is not None else 0,
        last_error=breaker.last_error if breaker is not None else None,
        calls=store.calls if store is not None else 0,
        timeouts=store.timeouts if store is not None else 0,
        errors=store.errors if store is not None else 0,
        saturated=store.saturated if store is not None else 0,
        read_policy=policy.name,
        reads_pay=policy.pays,
        skipped_reads=policy.skipped,
        probe_reads=policy.probes,
        recent_hit_rate=policy.hit_rate,
        read_ms=policy.read_seconds * 1000.0,
        compute_ms=policy.compute_seconds * 1000.0,
    )
