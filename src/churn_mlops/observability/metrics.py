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
the health probes are not counted. Every metric is one row of `metric_table.SERVICE_METRICS`;
the recorders are in `recorders`, the shared directory's life cycle in `metrics_dir`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from churn_mlops.core.tasks import cancel_and_wait
from churn_mlops.observability.metric_table import SERVICE_METRICS, build_metrics
from churn_mlops.observability.metrics_dir import (
    multiprocess_dir,
    remove_dead_workers,
    shared_metrics_dir,
)
from churn_mlops.observability.recorders import (
    UNCOUNTED_PATHS,
    UNMATCHED_ROUTE,
    ModelObserver,
    RequestRecorder,
    add_to_histogram,
)

if TYPE_CHECKING:
    from churn_mlops.cache import CacheStats
    from churn_mlops.observability.drift import DriftMonitor

# The one module the rest of the service imports for metrics, whichever file defines a name.
__all__ = [
    "UNCOUNTED_PATHS",
    "UNMATCHED_ROUTE",
    "PredictionLogCounters",
    "RequestRecorder",
    "ServiceMetrics",
    "exported_names",
    "multiprocess_dir",
    "shared_metrics_dir",
]

logger = logging.getLogger("churn_mlops.metrics")


class PredictionLogCounters(Protocol):
    """What the metrics read of the prediction-log writer's stats."""

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


class ServiceMetrics:
    """The service's Prometheus metrics, the hot-path recorders that feed them, and exposition."""

    def __init__(self, multiproc_dir: Path | None = None) -> None:
        self.multiproc_dir = multiproc_dir
        self._registry = CollectorRegistry(auto_describe=True)
        # Multiprocess mode: the metrics write to files; only the collector reads them.
        registry = None if multiproc_dir is not None else self._registry
        if multiproc_dir is not None:
            multiprocess.MultiProcessCollector(self._registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
        self.families = families = build_metrics(SERVICE_METRICS, registry)
        self.recorder = RequestRecorder()
        self.model = ModelObserver()
        self._request_duration = families.histogram("churn_http_request_duration_seconds")
        self._requests = families.counter("churn_http_requests")
        self._in_flight = families.gauge("churn_http_requests_in_flight")
        self._model_histograms = (
            (families.histogram("churn_model_batch_size_rows"), self.model.batch_rows),
            (families.histogram("churn_model_inference_seconds"), self.model.inference),
            (families.histogram("churn_batch_queue_wait_seconds"), self.model.queue_wait),
        )
        self._watches: list[_CounterWatch | _GaugeWatch] = []
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}
        self._task: asyncio.Task[None] | None = None
        self._failed_watches: set[int] = set()
        self._refused: dict[str, tuple[str, str]] = {}
        self.drift: DriftMonitor | None = None
        """Live drift of what the models score (observability.drift); None when off."""

    # --- registration: one line per component -------------------------------------------

    def watch_counter(self, counter: Counter, read: Callable[[], float | None]) -> None:
        """Each refresh adds the growth of `read()` (a count a component keeps) to `counter`."""
        self._watches.append(_CounterWatch(counter, read))

    def watch_gauge(self, gauge: Gauge, read: Callable[[], float | None]) -> None:
        """Each refresh sets `gauge` to `read()` (0 when it gives None)."""
        self._watches.append(_GaugeWatch(gauge, read))

    def watch_cache(self, stats: Callable[[], CacheStats | None]) -> None:
        """Hits and misses per level, L1 entries and refused L2 values, from
        `PredictionCache.stats()`."""
        snapshot: dict[str, CacheStats | None] = {"stats": None}

        def take() -> CacheStats | None:
            snapshot["stats"] = stats()
            return snapshot["stats"]

        def field(read: Callable[[CacheStats], float]) -> Callable[[], float | None]:
            def value() -> float | None:
                current = snapshot["stats"]
                return None if current is None else read(current)

            return value

        hits = self.families.counter("churn_cache_hits")
        misses = self.families.counter("churn_cache_misses")
        # The entries gauge goes first: its read takes the snapshot the counters then read.
        self.watch_gauge(
            self.families.gauge("churn_cache_entries").labels("l1"), lambda: _size(take())
        )
        self.watch_counter(hits.labels("l1"), field(lambda s: s.l1.hits))
        self.watch_counter(misses.labels("l1"), field(lambda s: s.l1.misses))
        self.watch_counter(hits.labels("l2"), field(lambda s: s.l2.hits))
        self.watch_counter(misses.labels("l2"), field(lambda s: s.l2.misses))
        rejected = self.families.counter("churn_cache_rejected")
        self.watch_counter(rejected, field(lambda s: s.l2.corrupt))

    def watch_batcher(
        self, shed: Callable[[], int | None], queued: Callable[[], int | None]
    ) -> None:
        self.watch_counter(self.families.counter("churn_requests_shed"), shed)
        self.watch_gauge(self.families.gauge("churn_batch_queue_depth"), queued)

    def watch_drift(self, drift: DriftMonitor) -> None:
        """Each refresh folds and publishes this worker's drift windows; a scrape exports PSI
        of the windows merged over the workers (`churn_feature_psi`, `churn_prediction_psi`)."""
        self.drift = drift
        self._registry.register(drift.collector())

    def watch_db_pool(self, in_use: Callable[[], int | None]) -> None:
        """Connections in use, e.g. `database.connections_in_use` (both of a worker's pools)."""
        self.watch_gauge(self.families.gauge("churn_db_pool_connections_in_use"), in_use)

    def watch_prediction_log(self, stats: Callable[[], PredictionLogCounters | None]) -> None:
        """Queue depth, rows flushed, spilled, replayed and retries of the prediction log."""
        holder: dict[str, PredictionLogCounters | None] = {"stats": None}

        def take() -> float | None:
            current = holder["stats"] = stats()
            return None if current is None else current.queue_depth

        def field(name: str) -> Callable[[], float | None]:
            def value() -> float | None:
                current = holder["stats"]
                return None if current is None else float(getattr(current, name))

            return value

        # The queue gauge goes first: its read takes the snapshot the counters then read.
        self.watch_gauge(self.families.gauge("churn_prediction_log_queue_depth"), take)
        for metric, attribute in (
            ("churn_prediction_log_rows_flushed", "rows_flushed"),
            ("churn_prediction_log_rows_spilled", "rows_spilled"),
            ("churn_prediction_log_rows_replayed", "rows_replayed"),
            ("churn_prediction_log_retries", "retries"),
        ):
            self.watch_counter(self.families.counter(metric), field(attribute))

    # --- model lifecycle: called when a version changes, never per request -----------------

    def record_model_serving(self, alias: str, before: str | None, version: str | None) -> None:
        """This worker now serves `version` under `alias` (None: nothing), instead of `before`."""
        serving = self.families.gauge("churn_model_serving")
        if before is not None and before != version:
            # Set to 0, not removed: a multiprocess file keeps a removed child's last value.
            serving.labels(alias, before).set(0)
        if version is not None:
            serving.labels(alias, version).set(1)
            self.families.counter("churn_model_swaps").labels(alias, "served").inc()
            refused = self._refused.pop(alias, None)
            if refused is not None:
                self.families.gauge("churn_model_refused").labels(alias, *refused).set(0)

    def clear_model_refused(self, alias: str) -> None:
        """The alias names a version this worker serves again: its refusal is over."""
        refused = self._refused.pop(alias, None)
        if refused is not None:
            self.families.gauge("churn_model_refused").labels(alias, *refused).set(0)

    def record_model_refused(self, alias: str, version: str, reason: str) -> None:
        """This worker refused `version` under `alias` for `reason`; the previous one serves."""
        self.families.counter("churn_model_swaps").labels(alias, "refused").inc()
        refused = self.families.gauge("churn_model_refused")
        earlier = self._refused.get(alias)
        if earlier is not None and earlier != (version, reason):
            refused.labels(alias, *earlier).set(0)
        self._refused[alias] = (version, reason)
        refused.labels(alias, version, reason).set(1)

    # --- refresh and exposition -----------------------------------------------------------

    def refresh(self) -> None:
        """Add what the recorders saw since the last refresh; read every watched component."""
        for key, counts, total in self.recorder.deltas():
            children = self._children.get(key)
            if children is None:
                route, method, status = key
                labels = (route, method, str(status))
                children = self._children[key] = (
                    self._request_duration.labels(*labels),
                    self._requests.labels(*labels),
                )
            add_to_histogram(children[0], counts, total)
            children[1].inc(sum(counts))
        self._in_flight.set(self.recorder.in_flight)
        if self.drift is not None:
            try:
                self.drift.refresh()
            except Exception:
                logger.exception("drift refresh failed; the drift gauges stay as they were")
        for histogram, distribution in self._model_histograms:
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
        await cancel_and_wait(self._task)
        self._task = None
        self.refresh()
        if self.drift is not None:
            self.drift.close()
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
