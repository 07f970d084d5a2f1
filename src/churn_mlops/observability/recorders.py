"""What the request path records for the metrics: plain Python counters, about 0.2 us a request,
that `ServiceMetrics.refresh` moves into the Prometheus metrics (why: the `metrics` module)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence, Sized
from time import perf_counter
from typing import TypeVar

from prometheus_client import Histogram

from churn_mlops.observability.metric_table import (
    BATCH_SIZE_BUCKETS,
    DURATION_BUCKETS,
    SHORT_BUCKETS,
)

_Rows = TypeVar("_Rows", bound=Sized)
_Result = TypeVar("_Result")

# Routes answered but not counted: Prometheus' own scrapes and the kubelet's probes.
UNCOUNTED_PATHS = frozenset({"/metrics", "/health/live", "/health/ready"})
UNMATCHED_ROUTE = "unmatched"


class Distribution:
    """A histogram kept in plain Python: cumulative bucket counts and sum, cheap to observe.

    `delta()` gives what was observed since its previous call. Observations come from the event
    loop's thread; a model call offloaded to the model thread observes from there, and in the
    rare case it races with another writer one count can be lost (never a crash).
    """

    __slots__ = ("_flushed_counts", "_flushed_total", "bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.total = 0.0
        self._flushed_counts = [0] * len(self.counts)
        self._flushed_total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (`le`).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def delta(self) -> tuple[list[int], float] | None:
        counts, total = list(self.counts), self.total
        new = [now - before for now, before in zip(counts, self._flushed_counts, strict=True)]
        if not any(new):
            return None
        added = total - self._flushed_total
        self._flushed_counts, self._flushed_total = counts, total
        return new, added


def add_to_histogram(histogram: Histogram, counts: Sequence[int], total: float) -> None:
    """Add pre-bucketed observations to a prometheus-client histogram (or one of its children).

    prometheus-client observes one value at a time; its per-bucket values (`_buckets`, one per
    upper bound with +Inf last, not cumulative) and `_sum` are the same objects its `observe`
    updates, in both its in-memory and its multiprocess mode. tests/unit/observability checks
    the exposition this gives against the one of plain `observe` calls.
    """
    buckets = histogram._buckets
    if len(buckets) != len(counts):
        raise ValueError(f"{len(counts)} bucket counts for a histogram of {len(buckets)}")
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(total)


class RequestRecorder:
    """What the request middleware records: duration per (route, method, status), in flight."""

    __slots__ = ("_by_key", "in_flight")

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, int], Distribution] = {}
        self.in_flight = 0

    def finished(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        distribution = self._by_key.get(key)
        if distribution is None:
            distribution = self._by_key[key] = Distribution(DURATION_BUCKETS)
        # Distribution.observe, inlined: this runs for every request.
        distribution.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        distribution.total += seconds

    def deltas(self) -> Iterable[tuple[tuple[str, str, int], list[int], float]]:
        for key, distribution in list(self._by_key.items()):
            if (new := distribution.delta()) is not None:
                yield key, *new


class ModelObserver:
    """Times every model call (rows per call, seconds) and records the batcher's queue wait."""

    __slots__ = ("batch_rows", "inference", "queue_wait")

    def __init__(self) -> None:
        self.batch_rows = Distribution(BATCH_SIZE_BUCKETS)
        self.inference = Distribution(SHORT_BUCKETS)
        self.queue_wait = Distribution(SHORT_BUCKETS)

    def timed(self, score: Callable[[_Rows], _Result]) -> Callable[[_Rows], _Result]:
        """`score(rows)` that also records len(rows) and how long it took."""
        batch_rows, inference = self.batch_rows, self.inference
        row_counts, row_bounds = batch_rows.counts, batch_rows.bounds
        time_counts, time_bounds = inference.counts, inference.bounds

        def timed_score(rows: _Rows) -> _Result:
            started = perf_counter()
            result = score(rows)
            seconds = perf_counter() - started
            # Two Distribution.observe calls, inlined: this runs for every model call.
            time_counts[bisect_left(time_bounds, seconds)] += 1
            inference.total += seconds
            size = len(rows)
            row_counts[bisect_left(row_bounds, size)] += 1
            batch_rows.total += size
            return result

        return timed_score
