"""`churn-mlops models` against a real registry directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from churn_mlops.cli import app
from churn_mlops.model.artifact import METADATA_FILE
from churn_mlops.model.registry import LocalRegistry


def models(registry: LocalRegistry, *arguments: str) -> Result:
    environment = {"CHURN_MODEL_REGISTRY_DIR": str(registry.root), "COLUMNS": "200"}
    return CliRunner().invoke(app, ["models", *arguments], env=environment)


@pytest.fixture
def versions(artifact_dir: Path, other_artifact_dir: Path) -> tuple[str, str]:
    first, second = (
        json.loads((directory / METADATA_FILE).read_text())["version"]
        for directory in (artifact_dir, other_artifact_dir)
    )
    return first, second


def test_list_shows_each_version_with_its_metrics_and_aliases(
    registry: LocalRegistry, versions: tuple[str, str]
) -> None:
    v1, v2 = versions
    registry.promote(v1)
    result = models(registry, "list")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "│ v" in line]
    rows = {line.split("│")[1].strip(): line for line in lines}
    assert set(rows) == {v1, v2}
    roc_auc = registry.get(v1).info.holdout_metrics.roc_auc
    assert f"{roc_auc:.4f}" in rows[v1]
    assert "champion" in rows[v1]
    assert "champion" not in rows[v2]
    assert "2 version(s)" in result.stderr


def test_show_prints_the_metadata(registry: LocalRegistry, versions: tuple[str, str]) -> None:
    v1, _ = versions
    info = registry.get(v1).info
    result = models(registry, "show", v1)
    assert result.exit_code == 0, result.output
    assert info.training_data_sha256 in result.stdout
    assert f"{info.holdout_metrics.brier:.4f}" in result.stdout


def test_register_prints_the_version_last_on_stdout(tmp_path: Path, artifact_dir: Path) -> None:
    registry = LocalRegistry(tmp_path / "models")
    result = models(registry, "register", str(artifact_dir))
    assert result.exit_code == 0, result.output
    version = result.stdout.splitlines()[-1]
    assert [v.version for v in registry.versions()] == [version]


def test_register_refuses_a_directory_without_an_artifact(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "models")
    result = models(registry, "register", str(tmp_path))
    assert result.exit_code == 1
    assert "is not a model artifact: missing model.joblib" in result.stderr
    assert result.stdout == ""


def test_promote_then_rollback_moves_the_alias(
    registry: LocalRegistry, versions: tuple[str, str]
) -> None:
    v1, v2 = versions
    assert models(registry, "promote", v1).exit_code == 0
    promoted = models(registry, "promote", v2)
    assert promoted.exit_code == 0, promoted.output
    assert f"champion is now {v2} (was {v1})" in promoted.stderr
    assert registry.aliases() == {"champion": v2}
    rolled_back = models(registry, "rollback")
    assert rolled_back.exit_code == 0, rolled_back.output
    assert f"champion is back to {v1} (was {v2})" in rolled_back.stderr
    assert registry.aliases() == {"champion": v1}


def test_promote_to_another_alias(registry: LocalRegistry, versions: tuple[str, str]) -> None:
    _, v2 = versions
    result = models(registry, "promote", v2, "--alias", "challenger")
    assert result.exit_code == 0, result.output
    assert registry.aliases() == {"challenger": v2}
    assert "challenger" in result.stdout
    assert v2 in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["show", "v0123456789ab"], "model version 'v0123456789ab' is not in the registry"),
        (["promote", "v0123456789ab"], "model version 'v0123456789ab' is not in the registry"),
        (["rollback", "--alias", "challenger"], "alias 'challenger' names no model version"),
    ],
)
def test_an_unknown_version_or_alias_fails_with_one_line(
    registry: LocalRegistry, arguments: list[str], message: str
) -> None:
    result = models(registry, *arguments)
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert registry.aliases() == {}
