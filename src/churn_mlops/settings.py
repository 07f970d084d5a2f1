"""The one settings object of the service, read from `CHURN_*` variables and `.env`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32
# Published on purpose: accepted only with CHURN_ENVIRONMENT=development (see `_strong_secret`).
DEVELOPMENT_SECRETS = {
    "jwt_secret": "churn-mlops-development-jwt-secret-not-for-production",
    "api_key_pepper": "churn-mlops-development-api-key-pepper-not-for-production",
}


def _default_workers() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """Every knob of churn-mlops; each field documents itself (see the README table)."""

    model_config = SettingsConfigDict(
        env_prefix="CHURN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
    )

    environment: Literal["development", "production", "test"] = "development"
    """Deployment mode: development, test or production."""

    host: str = "127.0.0.1"
    """Interface `churn-mlops serve` binds to."""

    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port `churn-mlops serve` listens on."""

    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """TCP port of the Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`);
    None (the default) serves no gRPC. Every worker listens on it (SO_REUSEPORT), on the same
    interface as HTTP."""

    workers: int = Field(default_factory=_default_workers, ge=1)
    """Server processes; defaults to the number of CPU cores."""

    model_dir: Path = Path("var/model")
    """Model artifact directory: served when set (or given as `--model-dir`); otherwise `serve`
    serves the registry's champion, and on a first run trains one here (if missing) and
    registers it."""

    model_registry_dir: Path = Path("var/models")
    """Local model registry: one artifact directory per version and the aliases (`champion`,
    `challenger`) that name them; `churn-mlops models` manages it."""

    model_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    """How often each worker of a `serve` on the registry reads the `champion` and `challenger`
    aliases; a promotion is served within this plus the new version's load (about 50 ms idle)."""

    mlflow_tracking_uri: str | None = None
    """MLflow tracking server (e.g. http://127.0.0.1:5000): set, the model registry is MLflow's
    registered model `CHURN_MLFLOW_MODEL_NAME` and `train` logs its runs there; empty means the
    local registry in `CHURN_MODEL_REGISTRY_DIR`."""

    mlflow_model_name: str = Field(default="churn", min_length=1)
    """Registered model name in MLflow."""

    challenger_mode: Literal["off", "shadow", "canary"] = "shadow"
    """What a `challenger` alias does: `shadow` scores the same rows off the response path and
    logs both probabilities; `canary` answers `CHURN_CANARY_PERCENT` of customers with it;
    `off` ignores it."""

    canary_percent: float = Field(default=10.0, ge=0, le=100)
    """Share of customers (hashed on `customer_id`, so each always gets the same model) that the
    challenger answers in canary mode; requests without a customer id go to the champion."""

    quality_window_days: int = Field(default=30, ge=1, le=3650)
    """Live model quality looks at outcomes observed in this many days."""

    quality_refresh_seconds: float = Field(default=60.0, gt=0)
    """How often live quality is recomputed from outcomes and predictions."""

    data_path: Path | None = None
    """Training data (CSV or Parquet) of `train` and of a first `serve`; empty means the IBM
    Telco sample shipped in the package."""

    data_schema: Path | None = None
    """Schema file (YAML) applied to what is inferred from `data_path`; empty with no
    `data_target` means the file is in the Telco layout (the shipped schema file)."""

    data_target: str | None = None
    """The column of `data_path` that says whether a customer churned."""

    data_id_column: str | None = None
    """The column of `data_path` that identifies a customer."""

    max_batch_rows: int = Field(default=10_000, ge=1)
    """Largest number of rows `/predict/batch` accepts; more is a 413."""

    explain_top_k: int = Field(default=5, ge=1, le=64)
    """How many features an answer asked for with `"explain": true` lists in its `reasons`:
    those with the largest exact TreeSHAP contributions to its log-odds."""

    slow_request_ms: float = Field(default=1000.0, gt=0)
    """Requests slower than this many milliseconds are logged as warnings."""

    gzip_min_bytes: int = Field(default=1000, ge=0)
    """Responses at least this large are gzip-compressed when the client accepts it."""

    gzip_level: int = Field(default=1, ge=1, le=9)
    """zlib level of compressed answers. 1, as nginx's default: a 10,000-row `/predict/batch`
    answer (1.3 MB) shrinks 7.6x in 4.8 ms, against 8.9x in 24.6 ms at 9 (docs/performance.md)."""

    model_threads: int = Field(default=1, ge=1)
    """OpenMP/BLAS threads per process for inference; 1 avoids oversubscribing the cores."""

    fast_predict_enabled: bool = True
    """Answer `POST /predict` with a raw ASGI endpoint ahead of FastAPI's routing; off routes it
    through FastAPI like every other path (same contract, slower)."""

    batcher_enabled: bool = True
    """Gather concurrent `/predict` requests into one model call; off answers each alone."""

    batch_max_size: int = Field(default=32, ge=1)
    """Most requests the micro-batcher puts in one model call."""

    batch_max_wait_ms: float = Field(default=0.0, ge=0)
    """How long the first request of a batch may wait for others; 0 gathers what arrived in
    the same event-loop turn, with no timer."""

    batch_max_queue: int = Field(default=256, ge=1)
    """Requests that may wait for the model per worker; past it `/predict` answers 503 with
    Retry-After at once instead of letting latency grow."""

    batch_max_queue_delay_ms: float = Field(default=50.0, gt=0)
    """Past this wait of the oldest queued request beyond `batch_max_wait_ms` (an event-loop turn
    this long means the worker is saturated), `/predict` answers 503 with Retry-After at once."""

    offload_min_rows: int = Field(default=50_000, ge=1)
    """Model calls with at least this many rows run in a worker thread, off the event loop;
    smaller ones run inline. The thread hop costs more than the model itself up to 10,000 rows
    (docs/performance.md), so by default only batches past the default row limit would move."""

    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """A connection must send a complete request head within this many seconds of connecting
    (or of its previous response), or it is closed: idle sockets cannot pile up."""

    max_connections_per_worker: int = Field(default=4096, ge=16)
    """Open connections a worker accepts requests on; past it requests get 503 at once. `serve`
    also keeps it below the process's file-descriptor limit (it raises the soft limit to the
    hard one, at most 65,536, and reserves 128 descriptors for the pool and files)."""

    graceful_shutdown_seconds: float = Field(default=20.0, gt=0)
    """On SIGTERM, how long open requests may take to finish before the server stops."""

    cache_enabled: bool = True
    """Serve repeated rows from the prediction cache (L1 in-process, L2 in Redis if set)."""

    cache_l1_size: int = Field(default=100_000, ge=0)
    """Predictions each worker keeps in memory (least recently used go first)."""

    cache_l1_ttl_seconds: float = Field(default=300.0, gt=0)
    """How long a prediction stays in a worker's memory; also bounds how long other workers
    may still serve an entry after `DELETE /cache` ran in one of them."""

    redis_url: str | None = None
    """Redis for the shared L2 cache (e.g. redis://127.0.0.1:6379/0); empty means L1 only."""

    cache_l2_ttl_seconds: float = Field(default=3600.0, gt=0)
    """How long a prediction stays in Redis."""

    cache_l2_read_policy: Literal["adaptive", "always"] = "adaptive"
    """When an L1 miss reads Redis: `adaptive` only while the measured L2 hit rate times the
    measured model time exceeds the measured read time (one miss in 32 still reads, to notice a
    change); `always` on every miss. Computed answers are written to Redis either way."""

    cache_redis_timeout_ms: float = Field(default=5.0, gt=0)
    """Budget of one Redis read; a slow or hanging Redis costs a prediction at most this (writes
    get four times as much and never delay a response)."""

    cache_key_prefix: str = Field(default="churn:pred", min_length=1)
    """Namespace of the cache's keys in Redis; the model version follows it in every key."""

    cache_secret: SecretStr = Field(default=SecretStr(""), validate_default=True)
    """HMAC key authenticating every value the cache writes to Redis (32+ characters): a value
    whose tag does not verify for its key and model version is a counted miss, never an answer,
    so whoever can write to Redis cannot plant answers. Every worker and every instance sharing
    a Redis must have the same secret (one that differs only loses L2 hits); changing it turns
    the values in Redis into misses until they are computed again. Empty means a fixed, public
    development secret in development and test; production refuses it while the Redis cache is
    on (`cache_enabled` and `redis_url`)."""

    @field_validator("cache_secret")
    @classmethod
    def _cache_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        # `_strong_secret`'s rule, except that test also gets the fixed secret (test servers
        # that share a Redis must share it, where a random one per process would not), and that
        # production without the Redis cache has nothing to authenticate.
        dev_value = "churn-mlops-development-cache-secret-not-for-production"
        text = value.get_secret_value()
        if info.data.get("environment") != "production":
            return value if text else SecretStr(dev_value)
        if not (info.data.get("cache_enabled") and info.data.get("redis_url")):
            return value
        if not text:
            raise ValueError(
                "CHURN_CACHE_SECRET is required in production: e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if text == dev_value or len(text) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"CHURN_CACHE_SECRET must be at least {MIN_SECRET_LENGTH} characters and not the "
                "development default"
            )
        return value

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the service's own loggers."""

    # --- Persistence: database, pool, prediction log ---

    database_url: str = "sqlite:///var/churn.db"
    """Customers and prediction history: `postgresql://user:pass@host:5432/db` (served through
    asyncpg) or `sqlite:///path` (aiosqlite; a relative path is from the working directory).
    Empty disables the database: predictions are served, the customer endpoints answer 503."""

    db_pool_size: int = Field(default=20, ge=1)
    """PostgreSQL connections each worker keeps open."""

    db_max_overflow: int = Field(default=10, ge=0)
    """Extra PostgreSQL connections a worker may open past the pool under a burst."""

    db_read_pool_size: int = Field(default=8, ge=1)
    """PostgreSQL connections each worker may open for the customer reads' own pool (opened on
    the first read), besides `db_pool_size` and `db_max_overflow`."""

    db_pool_pre_ping: bool = True
    """Test a pooled connection before use, so one the server dropped is replaced, not failed."""

    db_pool_recycle_seconds: int = Field(default=3600, ge=1)
    """Replace pooled connections older than this (idle-timeouts of proxies and servers)."""

    db_statement_timeout_ms: int = Field(default=5000, ge=1)
    """PostgreSQL cancels any statement of the service running longer than this."""

    prediction_log_enabled: bool = True
    """Record every answered prediction (single, batch, stored customer) as a row of
    `predictions`, written behind in batches, never on the response path; needs `database_url`."""

    prediction_log_flush_ms: float = Field(default=200.0, gt=0)
    """Longest a recorded prediction waits in a worker's memory before its batch is written."""

    prediction_log_batch_rows: int = Field(default=500, ge=1, le=1000)
    """Rows per insert (one multi-row statement, hence at most 1000); a batch this full is
    written at once, without waiting for `prediction_log_flush_ms`."""

    prediction_log_max_buffer: int = Field(default=100_000, ge=1)
    """Rows a worker keeps in memory while the database is slow or down; past it the oldest go
    to `prediction_log_spill_path`, so memory stays bounded and nothing is lost."""

    prediction_log_spill_path: Path = Path("var/prediction-log/predictions.jsonl")
    """Append-only JSONL file for the rows the database could not take in time (fsync'd per
    chunk); shared by the workers of a host, replayed when the database answers again and at
    start-up. Put it on a persistent volume to keep spilled rows across restarts."""

    prediction_log_write_timeout_seconds: float = Field(default=5.0, gt=0)
    """Budget of one batch insert; past it the batch counts as failed and is retried with the
    same row ids (an insert that did commit is not duplicated)."""

    prediction_log_retry_max_seconds: float = Field(default=5.0, gt=0)
    """Longest pause between retries while the database is down (the pause doubles from
    `prediction_log_flush_ms` up to this)."""

    prediction_log_shutdown_timeout_seconds: float = Field(default=5.0, gt=0)
    """At shutdown, how long the buffered rows may take to reach the database before the rest
    is spilled to `prediction_log_spill_path`."""

    log_features: bool = False
    """Also record each scored row's features in the prediction log (`predictions.features`:
    the model's encoded float32 row, 76 bytes), what `churn-mlops drift report` reads. Off, the
    log writes exactly what it wrote before."""

    # --- Security: authentication, API keys, rate limits ---

    auth_enabled: bool = Field(default=True, validate_default=True)
    """Require credentials (an API key or a bearer token with the right scope) on every route
    but health, docs and (unless `metrics_require_auth`) metrics; refused off in production."""

    jwt_secret: SecretStr = Field(default=SecretStr(""), validate_default=True)
    """HMAC key signing the bearer tokens of `POST /auth/login`; at least 32 characters. Empty
    means a fixed, public development secret in development, a random one per process in test,
    and is refused in production."""

    jwt_algorithm: Literal["HS256"] = "HS256"
    """Signature algorithm of bearer tokens; pinned: a token naming any other is refused."""

    jwt_issuer: str = Field(default="churn-mlops", min_length=1)
    """`iss` claim written into and required of every bearer token."""

    jwt_audience: str = Field(default="churn-mlops-api", min_length=1)
    """`aud` claim written into and required of every bearer token."""

    jwt_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    """Lifetime of a bearer token from `POST /auth/login`."""

    api_key_pepper: SecretStr = Field(default=SecretStr(""), validate_default=True)
    """Server-side secret mixed into every stored API key hash (HMAC-SHA256); at least 32
    characters. Same rule as `jwt_secret`; changing it invalidates every API key."""

    auth_cache_ttl_seconds: float = Field(default=10.0, ge=0, le=300)
    """How long a worker trusts a verified API key, or a token's user, without asking the
    database again: a revoked key, or a deleted or disabled user's tokens, keep working in other
    workers for at most this long (never a token past its `exp`). 0 verifies every request
    against the database."""

    auth_cache_size: int = Field(default=10_000, ge=1)
    """Verified credentials each worker keeps; the oldest go first past it."""

    auth_store_timeout_ms: float = Field(default=300.0, gt=0, le=10_000)
    """Longest a request waits for the database to verify a key or a token's user once the
    cache has expired. Past it (or on any database error) a credential verified in the last
    5 minutes is served from memory, any other gets a 503, and for 1 s no request waits."""

    rate_limit_enabled: bool = True
    """Limit requests per principal (API key or user, never per IP address) with a token bucket."""

    rate_limit_per_second: float = Field(default=20_000.0, gt=0)
    """Sustained requests per second each principal may send, unless its API key has a limit of
    its own (`keys create --rate-limit`); shared by all workers through Redis when `redis_url` is
    set and `rate_limit_shared`, else per worker. The default is what one instance serves
    (docs/performance.md, about 20,000/s): a service calling with one key is not throttled."""

    rate_limit_burst: int = Field(default=40_000, ge=1)
    """Requests a principal may send at once after being idle (the bucket's capacity), unless
    its API key has a limit of its own."""

    rate_limit_shared: bool = True
    """Share each principal's bucket between workers and replicas through Redis when
    `redis_url` is set; a slow or down Redis falls back to the worker's own bucket."""

    rate_limit_redis_timeout_ms: float = Field(default=5.0, gt=0)
    """Budget of one shared-bucket call to Redis; past it the worker's own bucket decides."""

    rate_limit_key_prefix: str = Field(default="churn:rl", min_length=1)
    """Namespace of the rate limiter's keys in Redis."""

    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest request body accepted (by Content-Length and by bytes received); more is a 413.
    The default fits a full batch of `max_batch_rows` customers."""

    max_json_depth: int = Field(default=32, ge=2)
    """Deepest nesting of arrays and objects a JSON body may have; deeper is a 413."""

    metrics_require_auth: bool = False
    """Require the `read` scope on `/metrics` (public by default, for Prometheus scrapes)."""

    dev_api_key_file: Path = Path("var/dev-api-key")
    """Where `churn-mlops serve` in development writes the development API key it creates."""

    @field_validator("auth_enabled")
    @classmethod
    def _auth_on_in_production(cls, value: bool, info: ValidationInfo) -> bool:
        if not value and info.data.get("environment") == "production":
            raise ValueError("authentication cannot be switched off in production")
        return value

    @field_validator("jwt_secret", "api_key_pepper")
    @classmethod
    def _strong_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        name = f"CHURN_{(info.field_name or '').upper()}"
        environment = info.data.get("environment")
        dev_value = DEVELOPMENT_SECRETS[info.field_name or ""]
        text = value.get_secret_value()
        if environment == "development":
            # A fixed, published secret: development tokens and keys survive restarts, and
            # nothing signed with it is accepted in test or production.
            return value if text else SecretStr(dev_value)
        if not text and environment == "test":
            return SecretStr(secrets.token_urlsafe(48))
        if not text:
            raise ValueError(
                f"{name} is required in {environment}: e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if text == dev_value or len(text) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{name} must be at least {MIN_SECRET_LENGTH} characters and not the "
                "development default"
            )
        return value

    # --- Observability: metrics, logs, profiling ---

    metrics_enabled: bool = True
    """Export Prometheus metrics at `GET /metrics` and record them on every request; off costs
    nothing per request (docs/performance.md, "Metrics cost")."""

    metrics_refresh_seconds: float = Field(default=1.0, gt=0)
    """How often each worker adds what it recorded to the metrics shared by all workers; a
    scrape sees the other workers' figures at most this old."""

    metrics_multiproc_dir: Path | None = None
    """Directory where `churn-mlops serve`'s workers share their metric files (emptied at
    start); empty means a new temporary directory per run. Needs to be writable."""

    drift_enabled: bool = True
    """With metrics on, count what each worker scores into sliding-window histograms against
    the model's reference profile and export per-feature and prediction PSI
    (`churn_feature_psi`, `churn_prediction_psi`); about 0.1 us per model call on the request
    path, the binning at each metrics refresh."""

    drift_window_seconds: float = Field(default=3600.0, gt=0)
    """The live drift window: PSI is computed over the rows scored in this many seconds (60
    buckets: a one-hour window slides by a minute)."""

    log_json: bool = True
    """Write logs as one JSON object per line (structlog); off writes aligned text."""

    profiling_enabled: bool = False
    """Answer `?profile=1` on any request with the pyinstrument report of that request, for
    principals with the admin scope. Profiling slows the profiled request several-fold."""

    profiling_without_auth: bool = False
    """Allow `?profile=1` without the admin scope (a local machine without authentication);
    refused in production."""

    @field_validator("profiling_without_auth")
    @classmethod
    def _profiling_auth_in_production(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("environment") == "production":
            raise ValueError("profiling without the admin scope is refused in production")
        return value
