from __future__ import annotations

from pathlib import Path

from benchmarks.shadow_ab import registry_with_challenger
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import LocalRegistry


def test_the_challenger_costs_what_the_champion_costs(artifact_dir: Path, tmp_path: Path) -> None:
    champion, challenger = registry_with_challenger(artifact_dir, tmp_path / "models")
    registry = LocalRegistry(tmp_path / "models")
    assert registry.aliases() == {"champion": champion, "challenger": challenger}
    first = ModelArtifact.load(registry.get(champion).path)
    second = ModelArtifact.load(registry.get(challenger).path)
    assert champion != challenger
    assert first.forest_bytes == second.forest_bytes  # the same trees: the same scoring cost
    assert second.threshold == first.threshold / 2
