"""Every Prometheus metric the service exports, one row each, and the registry built from them.

deploy/grafana dashboards and deploy/prometheus rules query these names, labels and buckets;
tests/api/observability checks that every name they use is exported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

REQUEST_LABELS = ("route", "method", "status")

MetricKind = Literal["counter", "gauge", "histogram"]
# How a gauge's per-worker values combine in multiprocess mode (prometheus-client's names).
GaugeMode = Literal[
    "all",
    "liveall",
    "min",
    "livemin",
    "max",
    "livemax",
    "sum",
    "livesum",
    "mostrecent",
    "livemostrecent",
]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. Counters are exported with `_total` appended to `name`."""

    kind: MetricKind
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    multiprocess_mode: GaugeMode | None = None

    def __post_init__(self) -> None:
        # Checked when the table is read: a misplaced option would otherwise be ignored, and a
        # gauge's missing mode would show only as wrong sums in a multi-worker deployment.
        if (self.kind == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: histograms, and only they, take buckets")
        if (self.kind == "gauge") != (self.multiprocess_mode is not None):
            raise ValueError(f"{self.name}: gauges, and only they, take a multiprocess mode")


# Gauges are `livesum`: the sum over the workers alive now, so a stopped worker leaves the sum.
SERVICE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "histogram",
        "churn_http_request_duration_seconds",
        "Time from a request's arrival until its response was sent, by route template.",
        REQUEST_LABELS,
        buckets=DURATION_BUCKETS,
    ),
    MetricSpec(
        "counter",
        "churn_http_requests",
        "HTTP requests answered, by route template, method and status.",
        REQUEST_LABELS,
    ),
    MetricSpec(
        "gauge",
        "churn_http_requests_in_flight",
        "Requests being answered (sampled at each refresh).",
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "histogram",
        "churn_model_batch_size_rows",
        "Rows per model call (micro-batches of /predict and /predict/batch bodies).",
        buckets=BATCH_SIZE_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "churn_model_inference_seconds",
        "Duration of one model call.",
        buckets=SHORT_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "churn_batch_queue_wait_seconds",
        "How long the oldest request of each micro-batch waited for its model call.",
        buckets=SHORT_BUCKETS,
    ),
    MetricSpec(
        "gauge",
        "churn_batch_queue_depth",
        "Requests waiting in the micro-batcher.",
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "counter",
        "churn_requests_shed",
        "Predictions refused with 503 because the batcher's queue was full or late.",
    ),
    MetricSpec("counter", "churn_cache_hits", "Prediction cache hits, by level.", ("level",)),
    MetricSpec("counter", "churn_cache_misses", "Prediction cache misses, by level.", ("level",)),
    MetricSpec(
        "gauge",
        "churn_cache_entries",
        "Entries in the in-process (L1) prediction caches.",
        ("level",),
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "gauge",
        "churn_db_pool_connections_in_use",
        "Database connections in use: checked out of the pool or held by a customer read.",
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "gauge",
        "churn_prediction_log_queue_depth",
        "Prediction-log rows waiting to be written to the database.",
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "counter",
        "churn_prediction_log_rows_flushed",
        "Prediction-log rows written to the database.",
    ),
    MetricSpec(
        "counter",
        "churn_prediction_log_rows_spilled",
        "Prediction-log rows spilled to local disk while the database was unavailable.",
    ),
    MetricSpec(
        "counter",
        "churn_prediction_log_rows_replayed",
        "Spilled prediction-log rows written to the database later.",
    ),
    MetricSpec(
        "counter",
        "churn_prediction_log_retries",
        "Prediction-log writes retried after a database error.",
    ),
    MetricSpec(
        "counter",
        "churn_model_swaps",
        "Model versions a worker followed an alias to (result=served) or refused to serve "
        "(result=refused: it failed to load or its compiled forest failed parity).",
        ("alias", "result"),
    ),
    MetricSpec(
        "gauge",
        "churn_model_serving",
        "1 for the version each worker serves under each alias (champion, challenger).",
        ("alias", "version"),
        multiprocess_mode="liveall",
    ),
    MetricSpec(
        "gauge",
        "churn_model_refused",
        "1 while a worker refuses the version an alias names, with the reason's category "
        "(not_registered, unreadable, modified, parity); the previous version keeps serving.",
        ("alias", "version", "reason"),
        multiprocess_mode="liveall",
    ),
    # Live quality (observability/quality.py): every worker computes the same figures from the
    # database, so the freshest live worker's value is exported, never their sum.
    MetricSpec(
        "gauge",
        "churn_model_live_roc_auc",
        "ROC AUC of each version's last prediction before each outcome observed in the last "
        "CHURN_QUALITY_WINDOW_DAYS days (NaN with outcomes of one class only).",
        ("version",),
        multiprocess_mode="livemostrecent",
    ),
    MetricSpec(
        "gauge",
        "churn_model_live_brier_score",
        "Brier score (mean squared error of the probability) of each version on the same "
        "outcomes as churn_model_live_roc_auc.",
        ("version",),
        multiprocess_mode="livemostrecent",
    ),
    MetricSpec(
        "gauge",
        "churn_model_live_calibration_error",
        "Expected calibration error (10 equal-width bins) of each version on the same outcomes "
        "as churn_model_live_roc_auc.",
        ("version",),
        multiprocess_mode="livemostrecent",
    ),
    MetricSpec(
        "gauge",
        "churn_model_live_outcomes",
        "Outcomes of the quality window that each version had scored before they were observed "
        "(the sample size of the live quality figures).",
        ("version",),
        multiprocess_mode="livemostrecent",
    ),
    MetricSpec(
        "counter",
        "churn_cache_rejected",
        "Values read from Redis and refused as misses: not written by this service for their "
        "key and model version (their HMAC tag does not verify: planted, another "
        "CHURN_CACHE_SECRET, damaged), or holding no probability in [0, 1].",
    ),
)


@dataclass(frozen=True)
class MetricFamilies:
    """The metrics built from a table, found by their name in it."""

    counters: dict[str, Counter]
    gauges: dict[str, Gauge]
    histograms: dict[str, Histogram]

    def counter(self, name: str) -> Counter:
        return self.counters[name]

    def gauge(self, name: str) -> Gauge:
        return self.gauges[name]

    def histogram(self, name: str) -> Histogram:
        return self.histograms[name]


def build_metrics(
    specs: Iterable[MetricSpec], registry: CollectorRegistry | None
) -> MetricFamilies:
    """Create every metric of `specs` in `registry` (None: the metrics write to the multiprocess
    files, which a collector reads, and are registered nowhere)."""
    families = MetricFamilies({}, {}, {})
    for spec in specs:
        if spec.kind == "counter":
            families.counters[spec.name] = Counter(
                spec.name, spec.help, spec.labels, registry=registry
            )
        elif spec.multiprocess_mode is not None:  # a gauge (MetricSpec checks)
            families.gauges[spec.name] = Gauge(
                spec.name,
                spec.help,
                spec.labels,
                registry=registry,
                multiprocess_mode=spec.multiprocess_mode,
            )
        else:
            families.histograms[spec.name] = Histogram(
                spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=registry
            )
    return families
