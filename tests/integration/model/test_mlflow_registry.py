"""The MLflow registry against a real `mlflow server`: the ModelRegistry semantics of the local
registry, what lands in MLflow, a damaged artifact, and two processes promoting at once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from benchmarks.servers import free_port
from churn_mlops.model.artifact import METADATA_FILE
from churn_mlops.model.mlflow_registry import MlflowRegistry, MlflowUnavailable, ReservedAliasName
from churn_mlops.model.registry import (
    CHALLENGER,
    CorruptRegistry,
    InvalidAliasName,
    InvalidArtifact,
    ModelRegistry,
    NothingToRollBack,
    UnknownAlias,
    UnknownModelVersion,
)
from tests.fixtures.mlflow_server import MlflowServer
from tests.integration.model.conftest import unique_model_name

if TYPE_CHECKING:
    from mlflow import MlflowClient

pytestmark = pytest.mark.timeout(120)


def version_of(artifact_dir: Path) -> str:
    version: str = json.loads((artifact_dir / METADATA_FILE).read_text())["version"]
    return version


@pytest.fixture
def v1(artifact_dir: Path) -> str:
    return version_of(artifact_dir)


@pytest.fixture
def v2(other_artifact_dir: Path) -> str:
    return version_of(other_artifact_dir)


@pytest.fixture
def empty_registry(mlflow_server: MlflowServer, tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry(mlflow_server.url, unique_model_name(), cache_dir=tmp_path / "cache")


def test_mlflow_registry_implements_the_protocol(empty_registry: MlflowRegistry) -> None:
    registry: ModelRegistry = empty_registry
    assert registry.versions() == []
    assert registry.aliases() == {}


def test_register_logs_a_run_and_a_model_version(
    empty_registry: MlflowRegistry, mlflow_client: MlflowClient, artifact_dir: Path, v1: str
) -> None:
    registered = empty_registry.register(artifact_dir, run_metrics={"cv_roc_auc": 0.84})

    assert registered.version == v1
    assert registered.path == empty_registry.cache.path(v1)
    for source in artifact_dir.iterdir():
        assert (registered.path / source.name).read_bytes() == source.read_bytes()
    [model_version] = mlflow_client.search_model_versions(f"name='{empty_registry.model_name}'")
    assert model_version.tags["churn_content_version"] == v1
    assert model_version.run_id is not None
    run = mlflow_client.get_run(model_version.run_id)
    info = registered.info
    assert run.info.run_name == v1
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in info.hyperparameters.items()}
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(info.holdout_metrics.roc_auc)
    assert run.data.metrics["holdout_brier"] == pytest.approx(info.holdout_metrics.brier)
    assert run.data.metrics["cv_roc_auc"] == pytest.approx(0.84)
    assert run.data.tags["training_data_sha256"] == info.training_data_sha256
    assert run.data.tags["source_artifact_dir"] == str(artifact_dir.resolve())
    logged = {Path(f.path).name for f in mlflow_client.list_artifacts(run.info.run_id, "model")}
    assert logged == {p.name for p in artifact_dir.iterdir()}


def test_register_twice_is_a_no_op(
    empty_registry: MlflowRegistry, mlflow_client: MlflowClient, artifact_dir: Path, v1: str
) -> None:
    empty_registry.register(artifact_dir)
    again = empty_registry.register(artifact_dir)

    assert again.version == v1
    found = mlflow_client.search_model_versions(f"name='{empty_registry.model_name}'")
    assert len(found) == 1
    experiment = mlflow_client.get_experiment_by_name(empty_registry.experiment_name)
    assert experiment is not None
    runs = mlflow_client.search_runs([experiment.experiment_id], f"tags.content_version='{v1}'")
    assert len(runs) == 1


def test_register_refuses_a_modified_artifact(
    empty_registry: MlflowRegistry, tmp_path: Path, artifact_dir: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(artifact_dir, tampered)
    metadata = json.loads((tampered / METADATA_FILE).read_text())
    metadata["threshold"] = 0.01
    (tampered / METADATA_FILE).write_text(json.dumps(metadata))

    with pytest.raises(InvalidArtifact) as refused:
        empty_registry.register(tampered)

    assert refused.value.status == 422
    assert refused.value.detail.startswith(f"{tampered} is not a valid model artifact: contents")
    assert empty_registry.versions() == []
    assert list(empty_registry.cache.root.iterdir()) == []  # no staging directory left


def test_versions_lists_every_registered_version(
    registry: MlflowRegistry, v1: str, v2: str
) -> None:
    assert {v.version for v in registry.versions()} == {v1, v2}
    assert registry.get(v2).info.version == v2


@pytest.mark.parametrize("version", ["v000000000000", "../models", "latest"])
def test_get_an_unknown_version_is_not_found(registry: MlflowRegistry, version: str) -> None:
    with pytest.raises(UnknownModelVersion) as missing:
        registry.get(version)
    assert missing.value.status == 404
    assert missing.value.detail == f"model version {version!r} is not in the registry"


def test_promote_sets_the_mlflow_alias(
    registry: MlflowRegistry, mlflow_client: MlflowClient, v1: str, v2: str
) -> None:
    assert registry.resolve("champion") is None

    registry.promote(v1)
    registry.promote(v2, alias=CHALLENGER)

    assert registry.aliases() == {"challenger": v2, "champion": v1}
    champion = registry.resolve("champion")
    assert champion is not None
    assert champion.version == v1
    by_alias = mlflow_client.get_model_version_by_alias(registry.model_name, "champion")
    assert by_alias.tags["churn_content_version"] == v1


class _LosesTheFirstAliasRace:
    """The registry's client, except that its first alias write meets the server's answer to
    two first writes at once: another writer's alias is stored, then this write is refused."""

    def __init__(self, client: MlflowClient, other_writer: MlflowClient, other_number: str):
        self._client = client
        self._other_writer = other_writer
        self._other_number = other_number
        self.alias_writes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        self.alias_writes += 1
        if self.alias_writes == 1:
            self._other_writer.set_registered_model_alias(name, alias, self._other_number)
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: registered_model_aliases",
                error_code="BAD_REQUEST",
            )
        self._client.set_registered_model_alias(name, alias, version)


def test_a_promotion_that_loses_the_race_to_create_the_alias_is_written_again(
    registry: MlflowRegistry, mlflow_client: MlflowClient, v1: str, v2: str
) -> None:
    other_number = registry.get(v2)  # downloaded: the other writer's version exists
    [mv2] = mlflow_client.search_model_versions(
        f"name='{registry.model_name}' and tags.churn_content_version='{other_number.version}'"
    )
    racing = _LosesTheFirstAliasRace(registry._client, mlflow_client, mv2.version)
    registry._client = racing  # type: ignore[assignment]

    registry.promote(v1)

    assert racing.alias_writes == 2
    assert registry.aliases() == {"champion": v1}  # the later writer wins
    assert [v for v, _ in registry.history("champion")] == [v1]


def test_an_alias_write_refused_with_the_alias_still_absent_is_an_error(
    registry: MlflowRegistry, mlflow_client: MlflowClient, v1: str
) -> None:
    class Refuses(_LosesTheFirstAliasRace):
        def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
            from mlflow.exceptions import MlflowException

            self.alias_writes += 1
            raise MlflowException("refused", error_code="BAD_REQUEST")

    refusing = Refuses(registry._client, mlflow_client, "1")
    registry._client = refusing  # type: ignore[assignment]

    with pytest.raises(MlflowUnavailable, match="refused"):
        registry.promote(v1)
    assert refusing.alias_writes == 1
    assert registry.aliases() == {}


def test_promote_an_unknown_version_changes_nothing(registry: MlflowRegistry, v1: str) -> None:
    registry.promote(v1)
    with pytest.raises(UnknownModelVersion, match="v0123456789ab"):
        registry.promote("v0123456789ab")
    assert registry.aliases() == {"champion": v1}
    assert [v for v, _ in registry.history("champion")] == [v1]


@pytest.mark.parametrize("alias", ["Champion", "9lives", "", "a" * 33, "../x", "latest", "v2"])
def test_an_invalid_alias_name_is_refused(registry: MlflowRegistry, v1: str, alias: str) -> None:
    with pytest.raises(InvalidAliasName) as refused:
        registry.promote(v1, alias=alias)
    assert refused.value.status == 422
    assert repr(alias) in refused.value.detail
    assert isinstance(refused.value, ReservedAliasName) == (alias in ("latest", "v2"))


def test_rollback_walks_back_through_the_history(
    registry: MlflowRegistry, v1: str, v2: str
) -> None:
    for version in (v1, v2, v2, v1):
        registry.promote(version)

    assert registry.rollback().version == v2
    assert registry.rollback().version == v1
    with pytest.raises(NothingToRollBack) as nothing:
        registry.rollback()
    assert nothing.value.status == 409
    assert registry.aliases() == {"champion": v1}
    assert [version for version, _ in registry.history("champion")] == [v1]


def test_rollback_or_history_of_an_unset_alias_is_not_found(registry: MlflowRegistry) -> None:
    with pytest.raises(UnknownAlias) as missing:
        registry.rollback(CHALLENGER)
    assert missing.value.detail == "alias 'challenger' names no model version"
    with pytest.raises(UnknownAlias):
        registry.history(CHALLENGER)


def test_remove_alias_clears_it_and_rollback_undoes_that(
    registry: MlflowRegistry, v1: str, v2: str
) -> None:
    registry.promote(v1, CHALLENGER)
    registry.promote(v2, CHALLENGER)

    assert registry.remove_alias(CHALLENGER) == v2

    assert registry.resolve(CHALLENGER) is None
    assert CHALLENGER not in registry.aliases()
    assert [version for version, _ in registry.history(CHALLENGER)] == [v1, v2]
    assert registry.rollback(CHALLENGER).version == v2
    registry.remove_alias(CHALLENGER)
    with pytest.raises(UnknownAlias):
        registry.remove_alias(CHALLENGER)


def test_resolve_downloads_and_verifies_into_the_cache(
    mlflow_server: MlflowServer, registry: MlflowRegistry, artifact_dir: Path, v1: str
) -> None:
    registry.promote(v1)
    fresh = MlflowRegistry(
        mlflow_server.url, registry.model_name, cache_dir=registry.cache.root / "new"
    )

    champion = fresh.resolve("champion")

    assert champion is not None
    assert champion.path == fresh.cache.path(v1)
    for source in artifact_dir.iterdir():
        assert (champion.path / source.name).read_bytes() == source.read_bytes()
    assert sorted(p.name for p in fresh.cache.root.iterdir()) == [v1]  # no download left over


def test_promoting_a_damaged_artifact_is_refused(
    mlflow_server: MlflowServer, mlflow_client: MlflowClient, tmp_path: Path, artifact_dir: Path
) -> None:
    name = unique_model_name()
    MlflowRegistry(mlflow_server.url, name, cache_dir=tmp_path / "trainer").register(artifact_dir)
    [model_version] = mlflow_client.search_model_versions(f"name='{name}'")
    [stored] = mlflow_server.artifacts.glob(f"*/{model_version.run_id}/artifacts/model/forest.npz")
    stored.write_bytes(stored.read_bytes()[:-100])  # the artifact store lost a file's tail
    server_side = MlflowRegistry(mlflow_server.url, name, cache_dir=tmp_path / "server")

    with pytest.raises(CorruptRegistry, match="does not verify"):
        server_side.promote(version_of(artifact_dir))

    assert server_side.aliases() == {}
    assert list(server_side.cache.root.iterdir()) == []


def test_an_unreachable_server_fails_in_seconds(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    registry = MlflowRegistry(url, "churn", cache_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(MlflowUnavailable) as failed:
        registry.aliases()
    assert time.monotonic() - started < 15
    assert failed.value.status == 503
    assert url in failed.value.detail


def test_without_mlflow_installed_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets when absent
    with pytest.raises(MlflowUnavailable, match=r"pip install 'churn-mlops\[mlflow\]'"):
        MlflowRegistry("http://127.0.0.1:5000")


_PROMOTER = """
import sys, time
from pathlib import Path
from churn_mlops.model.mlflow_registry import MlflowRegistry

url, name, cache, go, ready, first, second = sys.argv[1:]
registry = MlflowRegistry(url, name, cache_dir=Path(cache))
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.001)
for i in range(10):
    registry.promote(first if i % 2 == 0 else second)
"""


def test_two_processes_promoting_at_once_lose_no_promotion(
    mlflow_server: MlflowServer, registry: MlflowRegistry, tmp_path: Path, v1: str, v2: str
) -> None:
    go = tmp_path / "go"
    processes = []
    for n, order in enumerate([(v1, v2), (v2, v1)]):
        ready = tmp_path / f"ready-{n}"
        arguments = [mlflow_server.url, registry.model_name, str(registry.cache.root)]
        arguments += [str(go), str(ready), *order]
        processes.append(subprocess.Popen([sys.executable, "-c", _PROMOTER, *arguments]))
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in range(2)):
        assert time.monotonic() < deadline, "the promoting processes did not start"
        time.sleep(0.01)
    go.touch()  # both start promoting together
    assert [process.wait(timeout=60) for process in processes] == [0, 0]

    history = [version for version, _ in registry.history("champion")]
    assert len(history) == 20
    assert history.count(v1) == history.count(v2) == 10
    assert registry.aliases()["champion"] in {v1, v2}
