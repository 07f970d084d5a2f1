"""Prometheus metrics of the service, correct with several uvicorn workers.

Design, and why:

- **prometheus-client's multiprocess mode.** `churn-mlops serve` runs `settings.workers`
  processes behind one port and a scrape lands on any one of them, so each worker's metrics
  live in memory-mapped files in one directory (`PROMETHEUS_MULTIPROC_DIR`, set up and emptied by
  `serve` before the workers start) and whichever worker answers `GET /metrics` reads all of
  them: counters and histograms are summed over every process that ever ran (a restarted worker
  does not reset them), gauges are `livesum` (the sum over live workers; a worker's gauge files
  are removed when it stops, and those of a dead worker when the next one starts). Without that
  directory (tests, an app built in-process) each app has its own in-memory registry.
- **Nothing is written to those files on the request path.** A multiprocess-mode observation is
  a locked write into an mmap, about 1 us for a counter and 2 us for a histogram, and a request
  makes several; instead the hot path adds to plain Python counters (`Distribution`,
  `RequestRecorder`: about 0.2 us a request) and every `settings.metrics_refresh_seconds` (and
  before each scrape, in the worker that answers it) a refresh adds what is new to the
  Prometheus metrics. Other workers' figures are at most one refresh interval old.
- **State the components already keep is read, not observed.** Cache hits and misses per level,
  shed requests, the batcher queue, the DB pool and the prediction-log writer keep their own
  counts; a refresh turns their growth into counter increments (`watch_counter`) and their
  levels into gauges (`watch_gauge`). Adding one is a single registration.

Names are in base units with the `churn_` prefix, counters end in `_total`. Request metrics are
labelled by the route template (never the raw path), the method and the status; `/metrics` and
the health probes are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from churn_mlops.cache import CacheStats

logger = logging.getLogger("churn_mlops.metrics")

_Rows = TypeVar("_Rows", bound=Sized)
_Result = TypeVar("_Result")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# 100 us .. 10 s: a cached answer takes a few hundred microseconds, the SLO is 500 ms at p95.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Model calls and queueing are shorter than a request: from 10 us.
SHORT_BUCKETS = (0.00001, 0.000025, 0.00005, *DURATION_BUCKETS)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_000, 2_500, 5_000, 10_000, 50_000)

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


class PredictionLogStats(Protocol):
    """What the prediction-log writer reports (db/prediction_log.py)."""

    @property
    def queue_depth(self) -> int: ...
    @property
    def rows_flushed(self) -> int: ...
    @property
    def rows_spilled(self) -> int: ...
    @property
    def rows_replayed(self) -> int: ...
    @property
    def retries(self) -> int: ...


@dataclass
class _CounterWatch:
    counter: Counter
    read: Callable[[], float | None]
    last: float = 0.0

    def refresh(self) -> None:
        value = self.read()
        if value is None:
            return
        added = value - self.last
        if added < 0:  # the component was rebuilt and counts from zero again
            added = value
        if added:
            self.counter.inc(added)
        self.last = value


@dataclass
class _GaugeWatch:
    gauge: Gauge
    read: Callable[[], float | None]

    def refresh(self) -> None:
        value = self.read()
        self.gauge.set(0 if value is None else value)


def multiprocess_dir() -> Path | None:
    """The multiprocess directory, if this process writes its metrics there.

    Both conditions matter: prometheus-client picks its value class when it is first imported,
    so a directory set in the environment after that import is not used by this process.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(path)


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create `path` empty (files of an earlier run would add to this run's counters) and point
    `PROMETHEUS_MULTIPROC_DIR` at it, for the worker processes started after this call."""
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


@contextlib.contextmanager
def shared_metrics_dir(path: Path | None, *, enabled: bool = True) -> Iterator[Path | None]:
    """The workers' shared metrics directory for the duration of a server run: `path` emptied,
    or a new temporary directory removed afterwards; nothing when metrics are off."""
    if not enabled:
        yield None
        return
    if path is not None:
        yield prepare_multiprocess_dir(path)
        return
    remove_abandoned_dirs(Path(tempfile.gettempdir()))
    created = Path(tempfile.mkdtemp(prefix=f"{TEMP_DIR_PREFIX}{os.getpid()}-"))
    try:
        yield prepare_multiprocess_dir(created)
    finally:
        shutil.rmtree(created, ignore_errors=True)


TEMP_DIR_PREFIX = "churn-metrics-"


def remove_abandoned_dirs(parent: Path) -> list[Path]:
    """Remove the temporary metrics directories of `serve` runs whose process is gone (killed
    before it could clean up): their names carry its pid. Returns what was removed."""
    removed = []
    for entry in parent.glob(f"{TEMP_DIR_PREFIX}*-*"):
        pid_text = entry.name.removeprefix(TEMP_DIR_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or not entry.is_dir():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        except PermissionError:
            pass  # alive, someone else's
    return removed


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def remove_dead_workers(path: Path) -> list[int]:
    """Drop the live-gauge files of processes that no longer exist (a crashed worker never
    removed its own); returns their pids."""
    dead = set()
    for entry in path.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:
            pass  # alive, someone else's
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)


class ServiceMetrics:
    """The service's Prometheus metrics, the hot-path recorders that feed them, and exposition."""

    def __init__(self, multiproc_dir: Path | None = None) -> None:
        self.multiproc_dir = multiproc_dir
        self._registry = CollectorRegistry(auto_describe=True)
        # Multiprocess mode: the metrics write to files; only the collector reads them.
        registry = None if multiproc_dir is not None else self._registry
        if multiproc_dir is not None:
            multiprocess.MultiProcessCollector(self._registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
        labels = ("route", "method", "status")
        self.request_duration = Histogram(
            "churn_http_request_duration_seconds",
            "Time from a request's arrival until its response was sent, by route template.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "churn_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels,
            registry=registry,
        )
        self.in_flight = Gauge(
            "churn_http_requests_in_flight",
            "Requests being answered (sampled at each refresh).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "churn_model_batch_size_rows",
            "Rows per model call (micro-batches of /predict and /predict/batch bodies).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.inference = Histogram(
            "churn_model_inference_seconds",
            "Duration of one model call.",
            buckets=SHORT_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "churn_batch_queue_wait_seconds",
            "How long the oldest request of each micro-batch waited for its model call.",
            buckets=SHORT_BUCKETS,
            registry=registry,
        )
        self.batcher_queue = Gauge(
            "churn_batch_queue_depth",
            "Requests waiting in the micro-batcher.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "churn_requests_shed",
            "Predictions refused with 503 because the batcher's queue was full or late.",
            registry=registry,
        )
        self.cache_hits = Counter(
            "churn_cache_hits", "Prediction cache hits, by level.", ("level",), registry=registry
        )
        self.cache_misses = Counter(
            "churn_cache_misses",
            "Prediction cache misses, by level.",
            ("level",),
            registry=registry,
        )
        self.cache_entries = Gauge(
            "churn_cache_entries",
            "Entries in the in-process (L1) prediction caches.",
            ("level",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_in_use = Gauge(
            "churn_db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.prediction_log_queue = Gauge(
            "churn_prediction_log_queue_depth",
            "Prediction-log rows waiting to be written to the database.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.prediction_log_flushed = Counter(
            "churn_prediction_log_rows_flushed",
            "Prediction-log rows written to the database.",
            registry=registry,
        )
        self.prediction_log_spilled = Counter(
            "churn_prediction_log_rows_spilled",
            "Prediction-log rows spilled to local disk while the database was unavailable.",
            registry=registry,
        )
        self.prediction_log_replayed = Counter(
            "churn_prediction_log_rows_replayed",
            "Spilled prediction-log rows written to the database later.",
            registry=registry,
        )
        self.prediction_log_retries = Counter(
            "churn_prediction_log_retries",
            "Prediction-log writes retried after a database error.",
            registry=registry,
        )
        self.recorder = RequestRecorder()
        self.model = ModelObserver()
        self._watches: list[_CounterWatch | _GaugeWatch] = []
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}
        self._task: asyncio.Task[None] | None = None
        self._failed_watches: set[int] = set()

    # --- registration: one line per component -------------------------------------------

    def watch_counter(self, counter: Counter, read: Callable[[], float | None]) -> None:
        """Each refresh adds the growth of `read()` (a count a component keeps) to `counter`."""
        self._watches.append(_CounterWatch(counter, read))

    def watch_gauge(self, gauge: Gauge, read: Callable[[], float | None]) -> None:
        """Each refresh sets `gauge` to `read()` (0 when it gives None)."""
        self._watches.append(_GaugeWatch(gauge, read))

    def watch_cache(self, stats: Callable[[], CacheStats | None]) -> None:
        """Hits and misses per level and L1 entries, from `PredictionCache.stats()`."""
        snapshot: dict[str, CacheStats | None] = {"stats": None}

        def take() -> CacheStats | None:
            snapshot["stats"] = stats()
            return snapshot["stats"]

        def field(read: Callable[[CacheStats], float]) -> Callable[[], float | None]:
            def value() -> float | None:
                current = snapshot["stats"]
                return None if current is None else read(current)

            return value

        self.watch_gauge(self.cache_entries.labels("l1"), lambda: _size(take()))
        self.watch_counter(self.cache_hits.labels("l1"), field(lambda s: s.l1.hits))
        self.watch_counter(self.cache_misses.labels("l1"), field(lambda s: s.l1.misses))
        self.watch_counter(self.cache_hits.labels("l2"), field(lambda s: s.l2.hits))
        self.watch_counter(self.cache_misses.labels("l2"), field(lambda s: s.l2.misses))

    def watch_batcher(
        self, shed: Callable[[], int | None], queued: Callable[[], int | None]
    ) -> None:
        self.watch_counter(self.shed, shed)
        self.watch_gauge(self.batcher_queue, queued)

    def watch_db_pool(self, in_use: Callable[[], int | None]) -> None:
        """Connections checked out, e.g. `lambda: database.engine.pool.checkedout()`."""
        self.watch_gauge(self.db_pool_in_use, in_use)

    def watch_prediction_log(self, stats: Callable[[], PredictionLogStats | None]) -> None:
        """Queue depth, rows flushed, spilled, replayed and retries of the prediction log."""
        holder: dict[str, PredictionLogStats | None] = {"stats": None}

        def take() -> float | None:
            current = holder["stats"] = stats()
            return None if current is None else current.queue_depth

        def field(name: str) -> Callable[[], float | None]:
            def value() -> float | None:
                current = holder["stats"]
                return None if current is None else float(getattr(current, name))

            return value

        self.watch_gauge(self.prediction_log_queue, take)
        self.watch_counter(self.prediction_log_flushed, field("rows_flushed"))
        self.watch_counter(self.prediction_log_spilled, field("rows_spilled"))
        self.watch_counter(self.prediction_log_replayed, field("rows_replayed"))
        self.watch_counter(self.prediction_log_retries, field("retries"))

    # --- refresh and exposition -----------------------------------------------------------

    def refresh(self) -> None:
        """Add what the recorders saw since the last refresh; read every watched component."""
        for key, counts, total in self.recorder.deltas():
            children = self._children.get(key)
            if children is None:
                route, method, status = key
                labels = (route, method, str(status))
                children = self._children[key] = (
                    self.request_duration.labels(*labels),
                    self.requests.labels(*labels),
                )
            add_to_histogram(children[0], counts, total)
            children[1].inc(sum(counts))
        self.in_flight.set(self.recorder.in_flight)
        model = self.model
        for histogram, distribution in (
            (self.batch_size, model.batch_rows),
            (self.inference, model.inference),
            (self.queue_wait, model.queue_wait),
        ):
            if (new := distribution.delta()) is not None:
                add_to_histogram(histogram, *new)
        for index, watch in enumerate(self._watches):
            try:
                watch.refresh()
            except Exception:
                # A broken source must not stop the others; say so once, not every second.
                if index not in self._failed_watches:
                    self._failed_watches.add(index)
                    logger.exception("a metrics source failed; its metric stays as it was")

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of every worker's metrics, and its content type."""
        self.refresh()
        # Text format 0.0.4: what every Prometheus 2 and 3 reads (our names are all legacy-safe).
        return generate_latest(self._registry), CONTENT_TYPE_PLAIN_0_0_4

    def start(self, interval_seconds: float) -> None:
        """Refresh every `interval_seconds` in the background until `close()`."""
        if self._task is None:
            if self.multiproc_dir is not None:
                remove_dead_workers(self.multiproc_dir)
            self._task = asyncio.get_running_loop().create_task(
                self._refresh_every(interval_seconds)
            )

    async def _refresh_every(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                self.refresh()
            except Exception:  # keep refreshing: the next scrape may still work
                logger.exception("metrics refresh failed")

    async def close(self) -> None:
        """Last refresh, then this worker's gauges leave the live sums."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.refresh()
        if self.multiproc_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiproc_dir))  # type: ignore[no-untyped-call]


def _size(stats: CacheStats | None) -> float | None:
    return None if stats is None else stats.l1.size


def exported_names(exposition: bytes) -> frozenset[str]:
    """Metric family names in a Prometheus text exposition (`# TYPE` lines), with the sample
    names they give (`_total`, `_bucket`, `_sum`, `_count`)."""
    names: set[str] = set()
    for line in exposition.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "counter":
                names.add(name.removesuffix("_total") + "_total")
            elif kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return frozenset(names)
