"""One cluster for the package: three `churn-mlops serve --workers 1` instances started at once
from an empty PostgreSQL database, sharing it, one Redis (a key prefix of their own) and one
local model registry with a champion, behind HAProxy (deploy/haproxy/haproxy.cfg).

Package scope, so that the rehearsal's tests and Prometheus's (test_prometheus.py) run against
the same three instances; a test that stops or kills an instance starts it again before it
ends, and HAProxy shows every instance UP at the start of each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from benchmarks.servers import free_port
from churn_mlops.api.scopes import API_KEY_HEADER
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from tests.fixtures.cluster import ServeInstance, instance_env
from tests.fixtures.haproxy import SERVERS, LoadBalancer, require_haproxy, running_haproxy
from tests.fixtures.postgres import fresh_postgres_database
from tests.fixtures.redis_server import keys_removed_after, require_redis, unique_prefix
from tests.fixtures.security import provision_key


@dataclass(frozen=True)
class StartUp:
    """How the three instances started together."""

    ready_seconds: dict[str, float]
    """From the three `Popen`s to each instance's first ready answer."""


@dataclass
class Cluster:
    instances: dict[str, ServeInstance]
    balancer: LoadBalancer
    database_url: str
    registry: LocalRegistry
    versions: tuple[str, str]
    """The champion at start, and the other registered version."""
    api_key: str
    startup: StartUp

    @property
    def headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.api_key}

    def restart(self, name: str) -> None:
        """Start a stopped instance again, let HAProxy send it traffic (it may have been
        drained) and wait until HAProxy's health checks see it UP."""
        instance = self.instances[name]
        instance.start()
        instance.wait_ready()
        self.balancer.set_state(name, "ready")
        self.balancer.wait_status(name, "UP")

    def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Rows of a query on the cluster's database."""

        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self.database_url)
            try:
                return list(await connection.fetch(query, *args))
            finally:
                await connection.close()

        return asyncio.run(run())


def _start_together(instances: dict[str, ServeInstance]) -> StartUp:
    started = time.monotonic()
    for instance in instances.values():
        instance.start()
    ready = {}
    for name, instance in instances.items():
        instance.wait_ready()
        ready[name] = round(time.monotonic() - started, 1)
    return StartUp(ready)


@pytest.fixture(scope="package")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    registered_root: Path,
    artifact: ModelArtifact,
    other_artifact_dir: Path,
) -> Iterator[Cluster]:
    redis_url = require_redis()
    require_haproxy()
    work = tmp_path_factory.mktemp("cluster")
    registry = LocalRegistry(shutil.copytree(registered_root, work / "models"))
    registry.promote(artifact.version)
    versions = (artifact.version, ModelArtifact.load(other_artifact_dir).version)
    prefix = unique_prefix()
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database("churn_cluster"))
        stack.enter_context(keys_removed_after(redis_url, prefix))
        env = instance_env(database_url, redis_url, prefix, registry.root)
        instances = {name: ServeInstance(name, free_port(), work / name, env) for name in SERVERS}
        for instance in instances.values():
            stack.callback(instance.stop)
        startup = _start_together(instances)
        balancer = stack.enter_context(
            running_haproxy({name: i.port for name, i in instances.items()}, work)
        )
        for name in SERVERS:
            balancer.wait_status(name, "UP")
        # A key as `churn-mlops keys create` makes it, once the instances migrated the schema.
        api_key = provision_key(database_url, name="cluster-rehearsal")
        yield Cluster(instances, balancer, database_url, registry, versions, api_key, startup)


@pytest.fixture
def healthy(cluster: Cluster) -> Cluster:
    """The cluster, with every instance running and UP in HAProxy (checked before the test)."""
    for name, instance in cluster.instances.items():
        assert instance.process is not None, f"{name} was left stopped"
        cluster.balancer.wait_status(name, "UP")
    return cluster
