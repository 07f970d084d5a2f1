"""The reference profile: bins, proportions, PSI, the compiled counter and the artifact file."""

from __future__ import annotations

import bisect
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.model.artifact import (
    METADATA_FILE,
    ArtifactError,
    ModelArtifact,
    content_version,
)
from churn_mlops.model.drift_profile import (
    DRIFT_PROFILE_FILE,
    DriftProfileError,
    FeatureBins,
    ReferenceProfile,
    population_stability_index,
)
from churn_mlops.model.features import FeatureEncoder, FloatMatrix

TENURE = FEATURE_NAMES.index("tenure")
CONTRACT = FEATURE_NAMES.index("contract")


@pytest.fixture(scope="module")
def encoder(dataset: TelcoDataset) -> FeatureEncoder:
    return FeatureEncoder.fit(dataset.schema, dataset.columns)


@pytest.fixture(scope="module")
def rows(dataset: TelcoDataset, encoder: FeatureEncoder) -> FloatMatrix:
    return encoder.encode_columns(dataset.columns)


@pytest.fixture(scope="module")
def probabilities(rows: FloatMatrix) -> np.ndarray:
    return np.random.default_rng(7).beta(2, 5, size=len(rows))


@pytest.fixture(scope="module")
def profile(
    rows: FloatMatrix, probabilities: np.ndarray, encoder: FeatureEncoder
) -> ReferenceProfile:
    return ReferenceProfile.build(rows, probabilities, encoder)


def direct_psi(reference: list[float], sample: list[float], edges: list[float]) -> float:
    """PSI written out by hand: bins (e_i-1, e_i] by bisect, proportions floored at 1e-4."""
    n_bins = len(edges) + 1

    def shares(values: list[float]) -> list[float]:
        counts = [0] * n_bins
        for value in values:
            counts[bisect.bisect_left(edges, value)] += 1
        return [max(count / len(values), 1e-4) for count in counts]

    return sum(
        (a - e) * math.log(a / e) for a, e in zip(shares(sample), shares(reference), strict=True)
    )


def test_psi_equals_a_direct_computation_on_a_shifted_sample(
    profile: ReferenceProfile, rows: FloatMatrix
) -> None:
    tenure = profile.features[TENURE]
    shifted = rows[:, TENURE] / 2
    expected = direct_psi(rows[:, TENURE].tolist(), shifted.tolist(), list(tenure.edges))
    assert tenure.psi(tenure.bin_counts(shifted)) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.2
    assert tenure.psi(tenure.bin_counts(rows[:, TENURE])) == pytest.approx(0.0, abs=1e-12)


def test_numeric_bins_are_deciles_with_a_missing_bin(
    profile: ReferenceProfile, rows: FloatMatrix
) -> None:
    charges = profile.features[FEATURE_NAMES.index("monthly_charges")]
    assert charges.kind == "numeric"
    assert len(charges.edges) == 9
    assert charges.n_bins == 11
    assert sum(charges.expected) == pytest.approx(1.0)
    assert all(share == pytest.approx(0.1, abs=0.01) for share in charges.expected[:-1])
    total = profile.features[FEATURE_NAMES.index("total_charges")]
    missing = int(np.isnan(rows[:, FEATURE_NAMES.index("total_charges")]).sum())
    assert missing > 0
    assert total.expected[-1] == pytest.approx(missing / len(rows))


def test_no_numeric_bin_is_empty_in_training(profile: ReferenceProfile) -> None:
    for bins in (*profile.features, profile.prediction):
        if bins.kind == "numeric":
            assert min(bins.expected[:-1]) > 0, bins.name


def test_categorical_bins_follow_the_vocabulary_and_count_unseen(
    profile: ReferenceProfile, encoder: FeatureEncoder, rows: FloatMatrix
) -> None:
    contract = profile.features[CONTRACT]
    assert contract.categories == encoder.vocabularies["contract"]
    column = rows[:, CONTRACT]
    assert contract.expected[:-1] == pytest.approx(
        [float(np.mean(column == code)) for code in range(len(contract.categories))]
    )
    assert contract.expected[-1] == 0.0
    unseen = np.array([np.nan, 0.0, 99.0, -1.0, 0.5], dtype=np.float32)
    assert contract.bin_counts(unseen).tolist() == [1, 0, 0, 4]


def test_compiled_counter_equals_the_numpy_bins(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray
) -> None:
    varied = rows[:200].copy()
    varied[:20, :] = np.nan
    varied[20:40, CONTRACT] = 7.0  # a code no vocabulary reaches
    counts = np.zeros((3, profile.n_bins), dtype=np.int64)
    profile.add_counts(counts, varied, probabilities[:200], slot=1)
    profile.add_counts(counts, varied[:50], probabilities[:50], slot=1)
    expected = [
        bins.bin_counts(varied[:, i]) + bins.bin_counts(varied[:50, i])
        for i, bins in enumerate(profile.features)
    ]
    expected.append(
        profile.prediction.bin_counts(probabilities[:200])
        + profile.prediction.bin_counts(probabilities[:50])
    )
    assert counts[1].tolist() == np.concatenate(expected).tolist()
    assert not counts[0].any()
    assert not counts[2].any()
    split = profile.split_counts(counts[1])
    assert [int(part.sum()) for part in split] == [250] * (len(FEATURE_NAMES) + 1)


def test_profile_psi_per_feature_and_prediction(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray
) -> None:
    drifted = rows.copy()
    drifted[:, TENURE] /= 2
    counts = np.zeros((1, profile.n_bins), dtype=np.int64)
    profile.add_counts(counts, drifted, probabilities)
    features, prediction = profile.psi(counts[0])
    assert features["tenure"] > 0.2
    assert features["tenure"] == pytest.approx(
        population_stability_index(
            profile.features[TENURE].expected,
            profile.features[TENURE].bin_counts(drifted[:, TENURE]),
        )
    )
    assert max(v for name, v in features.items() if name != "tenure") < 1e-9
    assert prediction < 1e-9


def test_psi_floors_empty_bins_and_is_zero_without_rows() -> None:
    assert population_stability_index([0.5, 0.5, 0.0], [0, 0, 0]) == 0.0
    floored = population_stability_index([0.5, 0.5, 0.0], [50, 40, 10])
    assert floored == pytest.approx(
        (0.5 - 0.5) * 0 + (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    )
    with pytest.raises(DriftProfileError):
        population_stability_index([0.5, 0.5], [1, 2, 3])


def test_profile_json_round_trip(profile: ReferenceProfile) -> None:
    again = ReferenceProfile.from_json(profile.to_json())
    assert again == profile
    assert again.to_json() == profile.to_json()


def test_malformed_profile_is_refused(profile: ReferenceProfile) -> None:
    document = json.loads(profile.to_json())
    document["features"][0]["expected"].append(0.0)
    with pytest.raises(DriftProfileError, match="proportions"):
        ReferenceProfile.from_json(json.dumps(document).encode())
    with pytest.raises(DriftProfileError):
        ReferenceProfile.from_json(b"not json")


def test_bin_labels_name_each_bin() -> None:
    bins = FeatureBins("x", "numeric", edges=(1.0, 2.5), expected=(0.5, 0.25, 0.25, 0.0))
    assert bins.labels == ("(-inf, 1]", "(1, 2.5]", "(2.5, inf]", "missing")
    assert bins.bin_counts(np.array([1.0, 1.5, 2.5, 3.0, np.nan])).tolist() == [1, 2, 1, 1]


# --- in the artifact ------------------------------------------------------------------------


def test_trained_artifact_carries_the_training_rows_profile(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    assert (artifact_dir / DRIFT_PROFILE_FILE).is_file()
    profile = artifact.drift_profile
    assert profile is not None
    assert profile.rows == artifact.info.training_rows
    assert [bins.name for bins in profile.features] == list(FEATURE_NAMES)
    assert profile.features[CONTRACT].categories == artifact.encoder.vocabularies["contract"]
    # Deciles of the training predictions: ten bins of about a tenth each.
    assert len(profile.prediction.edges) == 9
    assert max(profile.prediction.expected[:-1]) < 0.15


def test_modified_profile_refuses_the_artifact(artifact_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(artifact_dir, copy)
    document = json.loads((copy / DRIFT_PROFILE_FILE).read_bytes())
    document["rows"] += 1
    (copy / DRIFT_PROFILE_FILE).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=DRIFT_PROFILE_FILE):
        ModelArtifact.load(copy)
    (copy / DRIFT_PROFILE_FILE).unlink()
    with pytest.raises(ArtifactError, match=f"missing {DRIFT_PROFILE_FILE}"):
        ModelArtifact.load(copy)


def test_artifact_made_before_profiles_loads_without_one(
    artifact_dir: Path, artifact: ModelArtifact, tmp_path: Path
) -> None:
    older = tmp_path / "model"
    shutil.copytree(artifact_dir, older)
    (older / DRIFT_PROFILE_FILE).unlink()
    metadata = json.loads((older / METADATA_FILE).read_text())
    del metadata["drift_profile_sha256"]
    encoder = json.loads((older / "encoder.json").read_text())
    forest = (older / "forest.npz").read_bytes()
    metadata["version"] = content_version(forest, encoder, metadata)
    (older / METADATA_FILE).write_text(json.dumps(metadata))
    loaded = ModelArtifact.load(older)
    assert loaded.drift_profile is None
    assert loaded.version != artifact.version
    assert loaded.info.drift_profile_sha256 is None
