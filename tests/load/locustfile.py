"""Locust scenario for the churn API: realistic customers from the training data (the shipped
Telco sample, or the file CHURN_DATA_PATH names, read by its schema: tests/load/bodies.py).

Each simulated user signs in once, then mixes weighted calls: predict one customer (most),
predict a batch of 10, read a stored customer by its dataset id (`GET /customers/{id}`), and the
readiness probe. Run it through `make loadtest` (starts a seeded server, checks the SLO), or
against any server:

    locust -f tests/load/locustfile.py --headless -u 20 -r 10 -t 1m --host http://127.0.0.1:8000

Credentials, from the environment: `CHURN_LOADTEST_API_KEY` (sent as `X-API-Key`), or
`CHURN_LOADTEST_USERNAME` and `CHURN_LOADTEST_PASSWORD` (`POST /auth/login` once per user, then
`Authorization: Bearer`); none for a server with authentication off. Routes the server does not
have (its `/openapi.json` says which) are left out, so the file also runs against older builds.

The run fails (exit code 1) when more than `CHURN_LOADTEST_MAX_ERROR_RATIO` (0.001) of the
requests failed or the p95 of all requests is above `CHURN_LOADTEST_P95_MS` (500, the course's
SLO). Never import this module outside Locust: locust monkey-patches the process with gevent.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.stats import StatsEntry

from tests.load.bodies import prediction_bodies, training_data

BATCH_SIZE = 10
SETUP = "setup: "
MAX_ERROR_RATIO = float(os.environ.get("CHURN_LOADTEST_MAX_ERROR_RATIO", "0.001"))
P95_MS = float(os.environ.get("CHURN_LOADTEST_P95_MS", "500"))

_dataset = training_data()
BODIES: list[dict[str, Any]] = prediction_bodies(_dataset)
CUSTOMER_IDS = list(_dataset.customer_ids)
logger = logging.getLogger("churn_mlops.loadtest")

# What the server offers, read once per process from its OpenAPI document.
_routes: set[str] | None = None


def server_routes(user: HttpUser) -> set[str]:
    global _routes
    if _routes is None:
        with user.client.get(
            "/openapi.json", name=f"{SETUP}/openapi.json", catch_response=True
        ) as r:
            if r.status_code == 200:
                _routes = set(r.json().get("paths", {}))
                r.success()
            else:
                r.failure(f"no OpenAPI document: {r.status_code}")
                _routes = set()
    return _routes


class ChurnApiUser(HttpUser):
    """One API client: signs in once, then predicts, reads customers and probes health."""

    wait_time = between(0.05, 0.25)

    def on_start(self) -> None:
        routes = server_routes(self)
        self.reads_customers = "/customers/{customer_id}" in routes
        self.headers: dict[str, str] = {}
        api_key = os.environ.get("CHURN_LOADTEST_API_KEY")
        username = os.environ.get("CHURN_LOADTEST_USERNAME")
        if api_key:
            self.headers["X-API-Key"] = api_key
        elif username and "/auth/login" in routes:
            password = os.environ.get("CHURN_LOADTEST_PASSWORD", "")
            with self.client.post(
                "/auth/login",
                json={"username": username, "password": password},
                name=f"{SETUP}/auth/login",
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"login refused: {response.status_code}")
                    return
                token = response.json()["access_token"]
                self.headers["Authorization"] = f"Bearer {token}"

    @task(12)
    def predict(self) -> None:
        self.client.post("/predict", json=random.choice(BODIES), headers=self.headers)

    @task(2)
    def predict_batch(self) -> None:
        start = random.randrange(len(BODIES) - BATCH_SIZE)
        self.client.post(
            "/predict/batch",
            json=BODIES[start : start + BATCH_SIZE],
            headers=self.headers,
            name=f"/predict/batch ({BATCH_SIZE} rows)",
        )

    @task(4)
    def read_customer(self) -> None:
        if not self.reads_customers:
            return
        self.client.get(
            f"/customers/{random.choice(CUSTOMER_IDS)}",
            headers=self.headers,
            name="/customers/{customer_id}",
        )

    @task(1)
    def health(self) -> None:
        self.client.get("/health/ready")


def measured_stats(environment: Environment) -> StatsEntry:
    """All requests but the once-per-user setup ones (OpenAPI document, login), whose latency
    (argon2 password hashing on purpose) is not the service's."""
    measured = StatsEntry(environment.stats, "measured", "", use_response_times_cache=False)
    for (name, _), entry in environment.stats.entries.items():
        if not name.startswith(SETUP):
            measured.extend(entry)
    return measured


@events.quitting.add_listener
def check_slo(environment: Environment, **_: Any) -> None:
    """Fail the run past the error ratio (every request) or the p95 target (measured ones)."""
    total, measured = environment.stats.total, measured_stats(environment)
    if measured.num_requests == 0:
        logger.error("loadtest: no request was made")
        environment.process_exit_code = 1
        return
    p95 = measured.get_response_time_percentile(0.95)
    verdict = (
        f"loadtest: {total.num_requests} requests, {total.num_failures} failed "
        f"({total.fail_ratio:.4%}, limit {MAX_ERROR_RATIO:.2%}), "
        f"p95 {p95:.0f} ms (SLO {P95_MS:.0f} ms), {measured.total_rps:.1f} req/s"
    )
    if total.fail_ratio > MAX_ERROR_RATIO or p95 > P95_MS:
        logger.error("%s: FAILED", verdict)
        environment.process_exit_code = 1
    else:
        logger.info("%s: passed", verdict)
        environment.process_exit_code = 0
