"""The local model registry against real directories, including two processes promoting at once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from churn_mlops.model.artifact import METADATA_FILE
from churn_mlops.model.registry import (
    ALIASES_FILE,
    CHALLENGER,
    CorruptRegistry,
    InvalidAliasName,
    InvalidArtifact,
    LocalRegistry,
    ModelRegistry,
    NothingToRollBack,
    UnknownAlias,
    UnknownModelVersion,
)


def version_of(artifact_dir: Path) -> str:
    version: str = json.loads((artifact_dir / METADATA_FILE).read_text())["version"]
    return version


@pytest.fixture
def v1(artifact_dir: Path) -> str:
    return version_of(artifact_dir)


@pytest.fixture
def v2(other_artifact_dir: Path) -> str:
    return version_of(other_artifact_dir)


def aliases_document(registry: LocalRegistry) -> dict[str, dict[str, object]]:
    document: dict[str, dict[str, object]] = json.loads((registry.root / ALIASES_FILE).read_text())[
        "aliases"
    ]
    return document


def test_local_registry_implements_the_protocol(tmp_path: Path) -> None:
    registry: ModelRegistry = LocalRegistry(tmp_path)
    assert registry.versions() == []


def test_register_copies_the_artifact_under_its_version(tmp_path: Path, artifact_dir: Path) -> None:
    registry = LocalRegistry(tmp_path / "models")
    registered = registry.register(artifact_dir)
    assert registered.version == version_of(artifact_dir)
    assert registered.path == tmp_path / "models" / registered.version
    for source in artifact_dir.iterdir():
        assert (registered.path / source.name).read_bytes() == source.read_bytes()
    assert sorted(p.name for p in registry.root.iterdir()) == [registered.version]


def test_register_twice_is_a_no_op(registry: LocalRegistry, artifact_dir: Path, v1: str) -> None:
    stored = registry.root / v1 / METADATA_FILE
    before = stored.stat().st_mtime_ns, sorted(p.name for p in registry.root.iterdir())
    again = registry.register(artifact_dir)
    assert again.version == v1
    assert (stored.stat().st_mtime_ns, sorted(p.name for p in registry.root.iterdir())) == before


def test_register_refuses_a_directory_without_an_artifact(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    registry = LocalRegistry(tmp_path / "models")
    with pytest.raises(InvalidArtifact, match=r"empty is not a model artifact: missing model"):
        registry.register(empty)
    assert registry.versions() == []


def test_register_refuses_a_modified_artifact(tmp_path: Path, artifact_dir: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(artifact_dir, tampered)
    metadata = json.loads((tampered / METADATA_FILE).read_text())
    metadata["threshold"] = 0.01
    (tampered / METADATA_FILE).write_text(json.dumps(metadata))
    registry = LocalRegistry(tmp_path / "models")
    with pytest.raises(InvalidArtifact) as refused:
        registry.register(tampered)
    assert refused.value.status == 422
    assert refused.value.detail.startswith(f"{tampered} is not a valid model artifact: contents")
    assert list(registry.root.iterdir()) == []  # no staging directory left behind


def test_versions_lists_every_registered_version(registry: LocalRegistry, v1: str, v2: str) -> None:
    assert v1 != v2
    assert {v.version for v in registry.versions()} == {v1, v2}
    assert registry.get(v2).info.version == v2


@pytest.mark.parametrize("version", ["v000000000000", "../models", "latest"])
def test_get_an_unknown_version_is_not_found(registry: LocalRegistry, version: str) -> None:
    with pytest.raises(UnknownModelVersion) as missing:
        registry.get(version)
    assert missing.value.status == 404
    assert missing.value.detail == f"model version {version!r} is not in the registry"


def test_resolve_an_unset_alias_is_none(registry: LocalRegistry) -> None:
    assert registry.resolve("champion") is None
    assert registry.aliases() == {}


def test_promote_points_the_alias_at_the_version(registry: LocalRegistry, v1: str, v2: str) -> None:
    registry.promote(v1)
    registry.promote(v2, alias="challenger")
    champion = registry.resolve("champion")
    assert champion is not None
    assert champion.version == v1
    assert registry.aliases() == {"challenger": v2, "champion": v1}


def test_promote_an_unknown_version_changes_nothing(registry: LocalRegistry, v1: str) -> None:
    registry.promote(v1)
    with pytest.raises(UnknownModelVersion, match="v0123456789ab"):
        registry.promote("v0123456789ab")
    assert registry.aliases() == {"champion": v1}
    assert [v for v, _ in registry.history("champion")] == [v1]


@pytest.mark.parametrize("alias", ["Champion", "9lives", "", "a" * 33, "../x"])
def test_an_invalid_alias_name_is_refused(registry: LocalRegistry, v1: str, alias: str) -> None:
    with pytest.raises(InvalidAliasName) as refused:
        registry.promote(v1, alias=alias)
    assert refused.value.status == 422
    assert repr(alias) in refused.value.detail


def test_rollback_returns_to_the_previous_champion(
    registry: LocalRegistry, v1: str, v2: str
) -> None:
    registry.promote(v1)
    registry.promote(v2)
    restored = registry.rollback()
    assert restored.version == v1
    assert registry.aliases() == {"champion": v1}


def test_rollback_walks_back_through_the_history(registry: LocalRegistry, v1: str, v2: str) -> None:
    for version in (v1, v2, v2, v1):
        registry.promote(version)
    assert registry.rollback().version == v2
    assert registry.rollback().version == v1
    with pytest.raises(NothingToRollBack) as nothing:
        registry.rollback()
    assert nothing.value.status == 409
    assert "'champion'" in nothing.value.detail
    assert v1 in nothing.value.detail
    assert registry.aliases() == {"champion": v1}


def test_rollback_an_unset_alias_is_not_found(registry: LocalRegistry) -> None:
    with pytest.raises(UnknownAlias) as missing:
        registry.rollback("challenger")
    assert missing.value.status == 404
    assert missing.value.detail == "alias 'challenger' names no model version"


def test_aliases_file_is_valid_json_after_every_operation(
    registry: LocalRegistry, v1: str, v2: str
) -> None:
    operations: list[Callable[[], object]] = [
        lambda: registry.promote(v1),
        lambda: registry.promote(v2),
        lambda: registry.promote(v1, alias="challenger"),
        lambda: registry.rollback(),
    ]
    expected = [
        {"champion": v1},
        {"champion": v2},
        {"champion": v2, "challenger": v1},
        {"champion": v1, "challenger": v1},
    ]
    for operation, aliases in zip(operations, expected, strict=True):
        operation()
        document = aliases_document(registry)
        assert {alias: entry["version"] for alias, entry in document.items()} == aliases
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".aliases-")] == []


def test_a_corrupt_aliases_file_is_reported(registry: LocalRegistry, v1: str) -> None:
    (registry.root / ALIASES_FILE).write_text('{"aliases": {"champion": ')
    with pytest.raises(CorruptRegistry, match=r"aliases\.json is not valid JSON"):
        registry.promote(v1)


_PROMOTER = """
import sys, time
from pathlib import Path
from churn_mlops.model.registry import LocalRegistry

root, go, ready, first, second = sys.argv[1:]
registry = LocalRegistry(Path(root))
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.001)
for i in range(50):
    registry.promote(first if i % 2 == 0 else second)
"""


def test_two_processes_promoting_at_once_lose_no_promotion(
    registry: LocalRegistry, tmp_path: Path, v1: str, v2: str
) -> None:
    go = tmp_path / "go"
    processes = []
    for n, order in enumerate([(v1, v2), (v2, v1)]):
        ready = tmp_path / f"ready-{n}"
        arguments = [str(registry.root), str(go), str(ready), *order]
        processes.append(subprocess.Popen([sys.executable, "-c", _PROMOTER, *arguments]))
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{n}").exists() for n in range(2)):
        assert time.monotonic() < deadline, "the promoting processes did not start"
        time.sleep(0.01)
    go.touch()  # both start promoting together
    assert [process.wait(timeout=60) for process in processes] == [0, 0]
    entry = aliases_document(registry)["champion"]
    history = [item["version"] for item in entry["history"]]  # type: ignore[attr-defined]
    assert len(history) == 100
    assert history.count(v1) == history.count(v2) == 50
    assert entry["version"] in {v1, v2}
    assert entry["version"] == history[-1]


def test_remove_alias_clears_it_and_rollback_undoes_that(
    registry: LocalRegistry, v1: str, v2: str
) -> None:
    registry.promote(v1, CHALLENGER)
    registry.promote(v2, CHALLENGER)

    assert registry.remove_alias(CHALLENGER) == v2

    assert registry.resolve(CHALLENGER) is None
    assert CHALLENGER not in registry.aliases()
    assert [version for version, _ in registry.history(CHALLENGER)] == [v1, v2]
    assert registry.rollback(CHALLENGER).version == v2  # undoes the removal


def test_remove_an_unset_alias_is_not_found(registry: LocalRegistry, v1: str) -> None:
    registry.promote(v1, CHALLENGER)
    registry.remove_alias(CHALLENGER)

    with pytest.raises(UnknownAlias):
        registry.remove_alias(CHALLENGER)
