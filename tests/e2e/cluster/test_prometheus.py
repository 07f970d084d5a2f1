"""Every PromQL expression of deploy/ asked of a real Prometheus that scrapes the rehearsal's
three instances every second: the Grafana dashboard's queries, the alert rules and the
Prometheus Adapter rule the HPA scales on. Each must answer with series carrying the labels it
is read by (a legend's `{{label}}`, an annotation's `$labels.x`, the adapter's `pod`): a panel
whose query answers nothing is a failure.

Some series exist only once their event happened, so the fixture makes each happen before a
bounded load: outcomes of stored customers (live quality), a corrupt version promoted and
refused (`churn_model_refused`) and rolled back, a promotion and its rollback (swaps), reads
that wait for a database connection past their budget behind a table lock (503s: the error-rate
panels), answers served from Redis by another instance (L2 hits) and malformed requests (4xx).
An alert rule is checked on each operand of its `and`s with the threshold comparison left out:
on healthy traffic the rule itself rightly answers nothing, while its left-hand side must
already answer, with the labels its annotations name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from churn_mlops.data import TelcoDataset
from tests.api.lifecycle.test_model_swap import corrupt_copy
from tests.api.observability.test_dashboards import ALERTS, DEPLOY, alert_rules, dashboard
from tests.e2e.cluster.conftest import Cluster
from tests.e2e.cluster.load import body, run_load, summary
from tests.fixtures.haproxy import SERVERS
from tests.fixtures.prometheus_server import PrometheusServer, running_prometheus
from tests.fixtures.serve import CLI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ADAPTER_RULES = DEPLOY / "k8s" / "prometheus-adapter-rules.yaml"
NAMESPACE = "churn-mlops"
PODS = {name: f"churn-api-{n}" for n, name in enumerate(SERVERS, start=1)}
"""The `namespace` and `pod` target labels Kubernetes service discovery would give."""
RATE_INTERVAL = "30s"
"""For Grafana's `$__rate_interval`: it covers the whole load, and 30 one-second scrapes."""
OUTCOME_CUSTOMERS = 200
LOCKED_READS, LOCK_SECONDS = 16, 2.5


def scrape_config(cluster: Cluster) -> dict[str, Any]:
    """Scrape the three instances every second, labelled as pods; load deploy's alert rules."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "churn-api",
                "metrics_path": "/metrics",
                "scrape_timeout": "900ms",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{instance.port}"],
                        "labels": {"namespace": NAMESPACE, "pod": PODS[name]},
                    }
                    for name, instance in cluster.instances.items()
                ],
            }
        ],
    }


# --- the events ---------------------------------------------------------------------------


def record_outcomes(cluster: Cluster, dataset: TelcoDataset) -> None:
    """Predict stored customers through HAProxy, then record what became of them (observed
    tomorrow, after the predictions, as live quality requires)."""
    seeded = subprocess.run(
        [CLI, "db", "seed", "--url", cluster.database_url],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "CHURN_DATABASE_URL": cluster.database_url},
    )
    assert seeded.returncode == 0, seeded.stderr.decode()[-2000:]
    ids = dataset.customer_ids[:OUTCOME_CUSTOMERS]
    with httpx.Client(base_url=cluster.balancer.url, headers=cluster.headers, timeout=10) as http:
        for customer_id in ids:
            response = http.post(f"/customers/{customer_id}/predict")
            assert response.status_code == 200, response.text
        wait_until(lambda: logged(cluster, ids) == len(ids), "the predictions were not logged")
        tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
        for customer_id, churned in zip(ids, dataset.churned[:OUTCOME_CUSTOMERS], strict=True):
            report = {"churned": churned, "observed_at": tomorrow}
            response = http.post(f"/customers/{customer_id}/outcome", json=report)
            assert response.status_code == 201, response.text


def logged(cluster: Cluster, ids: list[str]) -> int:
    rows = cluster.fetch(
        "SELECT count(*) AS n FROM predictions WHERE external_customer_id = ANY($1::text[])", ids
    )
    return int(rows[0]["n"])


def wait_until(check: Any, failure: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


def models(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Each instance's `GET /model`."""
    return {
        name: httpx.get(f"{i.url}/model", headers=cluster.headers, timeout=5).json()
        for name, i in cluster.instances.items()
    }


def refuse_a_corrupt_version(cluster: Cluster) -> dict[str, list[Any]]:
    """Promote a damaged copy of the champion in the registry; once every instance refuses it
    (and keeps serving), promote the champion back, as `churn-mlops models rollback` would.
    What each instance lists as refused a few polls later."""
    champion = cluster.registry.aliases()["champion"]
    cluster.registry.promote(corrupt_copy(cluster.registry, champion))
    wait_until(
        lambda: all(model["refused"] for model in models(cluster).values()),
        "the instances did not refuse the corrupt version",
    )
    cluster.registry.promote(champion)
    time.sleep(2.0)  # four polls of the registry (CHURN_MODEL_POLL_SECONDS)
    return {name: model["refused"] for name, model in models(cluster).items()}


def promote_and_back(cluster: Cluster) -> None:
    """Promote the other version in the registry, then the champion again: two swaps each."""
    champion = cluster.registry.aliases()["champion"]
    other = next(v for v in cluster.versions if v != champion)
    for version in (other, champion):
        cluster.registry.promote(version)
        wait_until(
            lambda version=version: all(m["version"] == version for m in models(cluster).values()),
            f"not every instance serves {version}",
        )


def l2_and_l1_hits(cluster: Cluster, round_: int) -> None:
    """Rows computed by api1, then asked twice of api2 and api3: L2 hits, then L1 hits."""
    rows = [body(f"prom-cache{round_}", 0, n) for n in range(40)]
    first, *others = cluster.instances.values()
    with httpx.Client(headers=cluster.headers, timeout=10) as http:
        for row in rows:
            assert http.post(f"{first.url}/predict", json=row).status_code == 200
        time.sleep(1.0)  # written behind to Redis
        for instance in others:
            for row in rows + rows:
                assert http.post(f"{instance.url}/predict", json=row).status_code == 200


def malformed_requests(cluster: Cluster, round_: int) -> None:
    with httpx.Client(base_url=cluster.balancer.url, headers=cluster.headers, timeout=10) as http:
        for n in range(10):
            bad = body(f"prom-bad{round_}", 0, n)
            bad["features"]["tenure"] = -1  # type: ignore[index]
            assert http.post("/predict", json=bad).status_code == 422


async def _reads_behind_a_lock(cluster: Cluster, customer_id: str) -> list[int]:
    instance = cluster.instances["api1"]
    admin = await asyncpg.connect(cluster.database_url)
    try:
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(
            base_url=instance.url, headers=cluster.headers, timeout=30
        ) as http:
            reads = asyncio.gather(
                *(http.get(f"/customers/{customer_id}") for _ in range(LOCKED_READS))
            )
            await asyncio.sleep(LOCK_SECONDS)
            await lock.rollback()
            responses = await reads
    finally:
        await admin.close()
    return [response.status_code for response in responses]


def a_slow_database(cluster: Cluster, customer_id: str) -> list[int]:
    """Hold an ACCESS EXCLUSIVE lock on `customers` for 2.5 s (as a long migration or a VACUUM
    FULL does) while 16 reads of a customer go to api1 at once: the first ones take its whole
    pool (4 + 4 connections) and wait on the lock, the others wait for a connection past the
    1 s budget and answer 503 + Retry-After (api/deps.py). The statuses."""
    return asyncio.run(_reads_behind_a_lock(cluster, customer_id))


@dataclass(frozen=True)
class Observed:
    prometheus: PrometheusServer
    refused_after_rollback: dict[str, list[Any]]


@pytest.fixture(scope="module")
def observed(
    cluster: Cluster, dataset: TelcoDataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    for name in SERVERS:
        cluster.balancer.wait_status(name, "UP")
    directory = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(scrape_config(cluster), directory) as server:
        server.wait_targets_up(len(SERVERS))
        record_outcomes(cluster, dataset)
        refused = refuse_a_corrupt_version(cluster)
        promote_and_back(cluster)
        # Twice, a scrape apart: a labelled counter is born with its first event, which
        # rate() cannot see; the second round moves the series the first one created.
        for round_ in (1, 2):
            l2_and_l1_hits(cluster, round_)
            malformed_requests(cluster, round_)
            statuses = a_slow_database(cluster, dataset.customer_ids[0])
            print(f"slow database {round_}: reads answered {sorted(statuses)}")
            assert 503 in statuses
            assert set(statuses) <= {200, 503}
            time.sleep(2.0)
        answers = asyncio.run(
            run_load(
                cluster.balancer.url,
                cluster.headers,
                "prom",
                asyncio.Event(),
                max_requests=20_000,
                max_seconds=6.0,
            )
        )
        print(f"load scraped by Prometheus: {summary(answers)}")
        assert all(answer.ok for answer in answers)
        time.sleep(2.5)  # two more scrapes and rule evaluations
        yield Observed(server, refused)


# --- the expressions ----------------------------------------------------------------------

LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
ANNOTATION_LABEL = re.compile(r"\$labels\.(\w+)")


STILL_ON_HEALTHY_TRAFFIC = {
    "Requests in flight",
    "Shed requests (503 Retry-After) [shed/s]",
    "Micro-batcher queue",
    "DB pool connections in use",
    "Prediction log backlog [queued rows]",
    "Prediction log backlog [spilled/s]",
    "Prediction log backlog [replayed/s]",
    "Prediction log backlog [retries/s]",
    "Model swaps and refusals [refused {{alias}} {{version}} ({{reason}})]",
}
"""Panels that read 0 after the rehearsal's events, rightly: sampled between requests, counting
outages or saturation that did not happen (a stalled instance given a burst of 400 requests
shed 0 to 35 of them: too few runs shed for a test), or a refusal that ended. Every other
query must answer above 0."""


def dashboard_queries() -> list[Any]:
    params = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", ()):
            legend = target.get("legendFormat", "")
            name = f"{panel['title']} [{legend}]"
            still = {name, panel["title"]} & STILL_ON_HEALTHY_TRAFFIC
            labels = set(LEGEND_LABEL.findall(legend))
            params.append(pytest.param(target["expr"], labels, not still, id=name))
    return params


SET_AND = re.compile(r"\band\b(\s+on\s*\([^)]*\))?")
THRESHOLD = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(bool\s+)?[-+]?[0-9.]+(e[-+]?[0-9]+)?\s*$")


def operands(expr: str) -> list[str]:
    """The operands of the top-level `and`s of an alert expression, each without the comparison
    with a number that ends it: `A > 0.5 and on (v) B >= 200` gives [A, B]."""
    parts, depth, start, position = [], 0, 0, 0
    while position < len(expr):
        character = expr[position]
        depth += {"(": 1, ")": -1}.get(character, 0)
        match = SET_AND.match(expr, position) if depth == 0 else None
        if match and (position == 0 or not expr[position - 1].isalnum()):
            parts.append(expr[start:position])
            start = position = match.end()
            continue
        position += 1
    parts.append(expr[start:])
    return [THRESHOLD.sub("", part).strip() for part in parts]


def alert_operands() -> list[Any]:
    params = []
    for rule in alert_rules():
        annotations = " ".join(rule["annotations"].values())
        labels = set(ANNOTATION_LABEL.findall(annotations))
        for n, operand in enumerate(operands(rule["expr"]), start=1):
            params.append(pytest.param(operand, labels, id=f"{rule['alert']} operand {n}"))
    return params


def shown(result: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{ {k: v for k, v in r['metric'].items() if k != '__name__'} } {r['value'][1]}"
        for r in result[:6]
    )


def check_answers(
    prometheus: PrometheusServer, expr: str, labels: set[str], *, moves: bool = False
) -> None:
    result = prometheus.query(expr)
    print(f"{expr[:110]!r} -> {shown(result)}")
    assert result, f"{expr} answers nothing"
    for series in result:
        assert labels <= series["metric"].keys(), (labels, series["metric"])
    if moves:
        assert any(float(series["value"][1]) > 0 for series in result), f"{expr} stays at 0"


@pytest.mark.parametrize(("expr", "labels", "moves"), dashboard_queries())
def test_dashboard_query_answers_with_its_legend_labels(
    observed: Observed, expr: str, labels: set[str], moves: bool
) -> None:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    check_answers(observed.prometheus, expr, labels, moves=moves)


@pytest.mark.parametrize(("expr", "labels"), alert_operands())
def test_alert_rule_operand_answers_with_its_annotation_labels(
    observed: Observed, expr: str, labels: set[str]
) -> None:
    check_answers(observed.prometheus, expr, labels)


def test_every_alert_rule_is_loaded_and_evaluates_without_error(observed: Observed) -> None:
    prometheus = observed.prometheus
    wait_until(
        lambda: all(r["health"] != "unknown" for r in prometheus.rules()), "rules not evaluated"
    )
    rules = {rule["name"]: rule for rule in prometheus.rules()}
    assert rules.keys() == {rule["alert"] for rule in alert_rules()}
    for name, rule in rules.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
        print(f"{name}: {rule['state']}")


def test_adapter_rule_serves_requests_per_second_for_each_pod(observed: Observed) -> None:
    prometheus = observed.prometheus
    (rule,) = yaml.safe_load(ADAPTER_RULES.read_text())["rules"]
    series = prometheus.series(rule["seriesQuery"])
    assert {s["pod"] for s in series} == set(PODS.values())
    assert {s["namespace"] for s in series} == {NAMESPACE}
    # What the adapter asks when the HPA wants the metric for the Deployment's pods.
    name = rule["seriesQuery"].split("{", 1)[0]
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", name)
        .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{"|".join(PODS.values())}"')
        .replace("<<.GroupBy>>", "pod")
    )
    result = prometheus.query(query)
    print(f"{query} -> {shown(result)}")
    assert {r["metric"]["pod"] for r in result} == set(PODS.values())
    assert all(float(r["value"][1]) > 0 and math.isfinite(float(r["value"][1])) for r in result)
    assert re.fullmatch(rule["name"]["matches"], name)


def test_a_refusal_ends_once_the_champion_alias_names_the_served_version_again(
    observed: Observed,
) -> None:
    assert observed.refused_after_rollback == {name: [] for name in SERVERS}
