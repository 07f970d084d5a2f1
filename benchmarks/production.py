"""The "production" server of the service suite: the service as a deployment runs it.

The other service rows isolate one thing each (the model path with the cache off, a ceiling).
This one is the headline and the capacity plan's input: API-key authentication and the rate
limiter on every request, Prometheus metrics, the L1 prediction cache, and the prediction log
on PostgreSQL (this machine's, in a database of the bench's own), with the same 2 workers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks.db_seed import create_database
from benchmarks.servers import BenchCredentials, ServerSpec, churn_service, provision_credentials
from churn_mlops.db import schema

NAME = "production"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/churn_bench_production"

PRODUCTION_ENV = {
    "CHURN_ENVIRONMENT": "production",
    "CHURN_AUTH_ENABLED": "true",
    "CHURN_RATE_LIMIT_ENABLED": "true",
    "CHURN_METRICS_ENABLED": "true",
    "CHURN_CACHE_ENABLED": "true",
    "CHURN_PREDICTION_LOG_ENABLED": "true",
}
"""Everything a deployment turns on; the credentials add the database and the secrets."""


class ProductionDatabaseError(RuntimeError):
    """The production server's PostgreSQL cannot be created or migrated."""


def prepare_database(url: str) -> None:
    """Create the bench's PostgreSQL database if it is missing and migrate it to head."""
    if make_url(url).get_backend_name() != "postgresql":
        raise ProductionDatabaseError(f"{url} is not a PostgreSQL URL")
    try:
        asyncio.run(create_database(url))
        schema.upgrade(url)
    except (OSError, RuntimeError, ValueError) as error:
        raise ProductionDatabaseError(f"PostgreSQL at {url}: {error}") from None
    except Exception as error:  # the driver's and SQLAlchemy's own errors, named in the message
        raise ProductionDatabaseError(
            f"PostgreSQL at {url}: {type(error).__name__}: {error}"
        ) from None


def production_credentials(work_dir: Path, database_url: str) -> BenchCredentials:
    """The bench's API key, created in the production server's own PostgreSQL database."""
    return provision_credentials(work_dir / NAME, database_url=database_url)


def production_service(model_dir: Path, credentials: BenchCredentials) -> ServerSpec:
    """`churn-mlops serve` with PRODUCTION_ENV on the credentials' PostgreSQL database."""
    return churn_service(model_dir, name=NAME, env=PRODUCTION_ENV, credentials=credentials)
