"""The versioned model artifact: a directory with the model, its compiled forest, its encoder
and metadata.json.

The version is a content hash of everything that decides a prediction: the compiled forest
(the exact decision function), the encoder, and the metadata without `created_at`. The pickled
estimator is left out of it because its bytes also record incidental state (the thread count
its binning ran with), which would give the same model another version on another machine; it
is tied to the artifact by its sha256 in the metadata instead. So the same data and seed give
the same version, and a changed file is caught on load. The API scores with the compiled
forest; a load refuses an artifact whose forest disagrees with the estimator on the shipped
dataset. The estimator's probabilities on those rows are stored at build time (parity.npy,
tied to the version by its sha256 in the metadata), so a load checks the forest against them
without unpickling the estimator: a running worker swapping models verifies one in about 30 ms
of CPU instead of 0.5 s. The estimator itself is unpickled only when something asks for it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from churn_mlops.core.features import CATEGORICAL_FEATURES, FEATURE_NAMES
from churn_mlops.core.model_info import ModelInfo
from churn_mlops.data import load_telco_csv
from churn_mlops.model.compiled import (
    CompiledForest,
    ForestFileError,
    ParityError,
    check_parity,
    check_probabilities,
)
from churn_mlops.model.drift_profile import (
    DRIFT_PROFILE_FILE,
    DriftProfileError,
    ReferenceProfile,
)
from churn_mlops.model.features import FeatureEncoder, FloatMatrix
from churn_mlops.model.treeshap import ExplainerFileError, TreeExplainer

MODEL_FILE = "model.joblib"
ENCODER_FILE = "encoder.json"
METADATA_FILE = "metadata.json"
FOREST_FILE = "forest.npz"
PARITY_FILE = "parity.npy"
EXPLAINER_FILE = "explainer.npz"

# Rows of the shipped dataset that parity_rows varies (missing values, unseen categories).
_VARIED_ROWS = 32


class ArtifactError(RuntimeError):
    """The artifact directory is missing, incomplete or does not match its version."""


def _canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _pickle_bytes(estimator: Any) -> bytes:
    import joblib  # training only: serving never pickles

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def content_version(forest_bytes: bytes, encoder: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The version string of an artifact with these contents."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(forest_bytes).digest())
    digest.update(_canonical_json(encoder))
    unversioned = {**metadata, "version": "", "created_at": "", "model_sha256": ""}
    if unversioned.get("parity_sha256") is None:
        # Artifacts made before parity.npy existed keep the version they were given.
        unversioned.pop("parity_sha256", None)
    if unversioned.get("drift_profile_sha256") is None:
        # Nor do those made before drift_profile.json existed.
        unversioned.pop("drift_profile_sha256", None)
    if unversioned.get("explainer_sha256") is None:
        # Nor those made before explainer.npz existed.
        unversioned.pop("explainer_sha256", None)
    digest.update(_canonical_json(unversioned))
    return "v" + digest.hexdigest()[:12]


@cache
def _shipped_columns() -> dict[str, Any]:
    """The shipped dataset's columns, read once per process: a model swap in a running worker
    verifies parity again, and reading the CSV was 40 % of that (0.22 of 0.5 s)."""
    return load_telco_csv().columns


def parity_rows(encoder: FeatureEncoder) -> FloatMatrix:
    """Rows on which a compiled forest must agree with its estimator: every customer of the
    shipped dataset (8 of them without total_charges), then some of them with total_charges
    missing, with each category missing, with every value missing, and with unseen codes."""
    rows = encoder.encode_columns(_shipped_columns())
    some = rows[:: max(1, len(rows) // _VARIED_ROWS)][:_VARIED_ROWS]
    categorical = [i for i, name in enumerate(FEATURE_NAMES) if name in CATEGORICAL_FEATURES]
    total_charges = FEATURE_NAMES.index("total_charges")
    varied = [rows]
    for columns, value in [
        ([total_charges], np.nan),
        *(([i], np.nan) for i in categorical),
        (list(range(len(FEATURE_NAMES))), np.nan),
        (categorical, 99.0),  # a code no vocabulary reaches
        (categorical, -1.0),
        (categorical, 0.5),
    ]:
        variant = some.copy()
        variant[:, columns] = value
        varied.append(variant)
    return np.concatenate(varied)


def _check_forest(
    forest: CompiledForest,
    encoder: FeatureEncoder,
    where: str,
    *,
    estimator: Any = None,
    expected: npt.NDArray[np.float64] | None = None,
) -> None:
    """Refuse a forest that disagrees with the estimator, or with its stored probabilities."""
    try:
        if expected is not None:
            check_probabilities(forest, expected, parity_rows(encoder))
        else:
            check_parity(forest, estimator, parity_rows(encoder))
    except ParityError as error:
        raise ArtifactError(
            f"{where}: the compiled forest does not match the model: {error}"
        ) from None


@dataclass(frozen=True)
class ModelArtifact:
    """A trained estimator, its compiled forest, the encoder their rows need, and what is known
    about them."""

    encoder: FeatureEncoder
    info: ModelInfo
    # The estimator's bytes as hashed: re-pickling a loaded estimator need not give them back.
    model_bytes: bytes = field(repr=False)
    # What the API scores with: the estimator's trees as arrays, with compiled kernels.
    forest: CompiledForest = field(repr=False)
    forest_bytes: bytes = field(repr=False)
    # The estimator's probabilities on parity_rows, as np.save wrote them; None in artifacts
    # made before they were stored.
    parity_bytes: bytes | None = field(default=None, repr=False)
    # drift_profile.json as written: the training rows' reference profile; None in artifacts
    # made before it existed (served with drift monitoring off).
    drift_profile_bytes: bytes | None = field(default=None, repr=False)
    # explainer.npz as written: the trees' arrays for reason codes (TreeSHAP); None in
    # artifacts made before it existed (they answer no reasons).
    explainer_bytes: bytes | None = field(default=None, repr=False)

    @cached_property
    def explainer(self) -> TreeExplainer | None:
        """Exact TreeSHAP contributions of the model; None for an older model."""
        if self.explainer_bytes is None:
            return None
        return TreeExplainer.from_bytes(self.explainer_bytes)

    @cached_property
    def drift_profile(self) -> ReferenceProfile | None:
        """The reference profile live drift is measured against; None for an older model."""
        if self.drift_profile_bytes is None:
            return None
        return ReferenceProfile.from_json(self.drift_profile_bytes)

    @cached_property
    def estimator(self) -> Any:
        """The scikit-learn estimator, unpickled on first use (training, audits, the parity
        check of an artifact without parity.npy); serving scores with `forest`."""
        # The model file is a pickle, which runs code when loaded: serve only artifacts made by
        # `churn-mlops train` (its sha256 in the metadata catches corruption, not a forger).
        import joblib  # here, not at the top: a serving worker never imports it

        return joblib.load(io.BytesIO(self.model_bytes))

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def threshold(self) -> float:
        return self.info.threshold

    @classmethod
    def build(
        cls,
        estimator: Any,
        encoder: FeatureEncoder,
        info: ModelInfo,
        *,
        drift_profile: ReferenceProfile | None = None,
    ) -> ModelArtifact:
        """Compile the estimator, check the compiled forest against it, and stamp `info` with
        the content version of the estimator, forest and encoder (and of `drift_profile`, the
        training rows' reference profile, through its sha256 in the metadata)."""
        model_bytes = _pickle_bytes(estimator)
        forest = CompiledForest.from_estimator(estimator)
        _check_forest(forest, encoder, "new artifact", estimator=estimator)
        forest_bytes = forest.to_bytes()
        expected = np.asarray(estimator.predict_proba(parity_rows(encoder))[:, 1], dtype=np.float64)
        buffer = io.BytesIO()
        np.save(buffer, expected, allow_pickle=False)
        parity_bytes = buffer.getvalue()
        info = info.model_copy(update={"parity_sha256": hashlib.sha256(parity_bytes).hexdigest()})
        explainer = TreeExplainer.from_estimator(estimator)
        explainer_bytes = explainer.to_bytes()
        info = info.model_copy(
            update={"explainer_sha256": hashlib.sha256(explainer_bytes).hexdigest()}
        )
        # Set either way: `info` copied from another artifact must not keep its profile's hash.
        profile_bytes = None if drift_profile is None else drift_profile.to_json()
        profile_sha256 = (
            None if profile_bytes is None else hashlib.sha256(profile_bytes).hexdigest()
        )
        info = info.model_copy(update={"drift_profile_sha256": profile_sha256})
        version = content_version(forest_bytes, encoder.to_dict(), info.model_dump(mode="json"))
        model_sha256 = hashlib.sha256(model_bytes).hexdigest()
        artifact = cls(
            encoder,
            info.model_copy(update={"version": version, "model_sha256": model_sha256}),
            model_bytes,
            forest,
            forest_bytes,
            parity_bytes,
            drift_profile_bytes=profile_bytes,
            explainer_bytes=explainer_bytes,
        )
        artifact.__dict__["estimator"] = estimator  # the cached_property, already known
        artifact.__dict__["explainer"] = explainer
        return artifact

    def save(self, directory: Path) -> Path:
        """Write the artifact to `directory` atomically, replacing what was there."""
        directory = directory.resolve()
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            (staging / MODEL_FILE).write_bytes(self.model_bytes)
            (staging / FOREST_FILE).write_bytes(self.forest_bytes)
            (staging / ENCODER_FILE).write_text(json.dumps(self.encoder.to_dict(), indent=2))
            (staging / METADATA_FILE).write_text(self.info.model_dump_json(indent=2))
            if self.parity_bytes is not None:
                (staging / PARITY_FILE).write_bytes(self.parity_bytes)
            if self.drift_profile_bytes is not None:
                (staging / DRIFT_PROFILE_FILE).write_bytes(self.drift_profile_bytes)
            if self.explainer_bytes is not None:
                (staging / EXPLAINER_FILE).write_bytes(self.explainer_bytes)
            if directory.exists():
                retired = directory.with_name(f".{directory.name}-retired-{os.getpid()}")
                directory.rename(retired)
                staging.rename(directory)
                shutil.rmtree(retired)
            else:
                staging.rename(directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelArtifact:
        """Read an artifact, check it against its version and its compiled forest against its
        estimator; only load artifacts you made."""
        names = (MODEL_FILE, ENCODER_FILE, METADATA_FILE, FOREST_FILE)
        paths = [directory / name for name in names]
        if missing := [p.name for p in paths if not p.is_file()]:
            raise ArtifactError(
                f"{directory} is not a model artifact: missing {', '.join(missing)}"
            )
        model_bytes = paths[0].read_bytes()
        forest_bytes = paths[3].read_bytes()
        try:
            encoder_doc = json.loads(paths[1].read_text())
            metadata = json.loads(paths[2].read_text())
            info = ModelInfo.model_validate(metadata)
        except (ValueError, ValidationError) as error:
            raise ArtifactError(f"{directory}: unreadable metadata or encoder: {error}") from None
        expected = content_version(forest_bytes, encoder_doc, info.model_dump(mode="json"))
        if hashlib.sha256(model_bytes).hexdigest() != info.model_sha256:
            raise ArtifactError(
                f"{directory}: {MODEL_FILE} does not match the sha256 in {METADATA_FILE}; "
                "the artifact was modified or is incomplete"
            )
        if expected != info.version:
            raise ArtifactError(
                f"{directory}: contents hash to {expected} but metadata says {info.version}; "
                "the artifact was modified or is incomplete"
            )
        parity_bytes = _read_parity(directory, info)
        encoder = FeatureEncoder.from_dict(encoder_doc)
        try:
            forest = CompiledForest.from_bytes(forest_bytes)
        except ForestFileError as error:
            raise ArtifactError(f"{directory}: {error}") from None
        profile_bytes = _read_drift_profile(directory, info)
        artifact = cls(
            encoder,
            info,
            model_bytes,
            forest,
            forest_bytes,
            parity_bytes,
            drift_profile_bytes=profile_bytes,
            explainer_bytes=_read_explainer(directory, info),
        )
        try:
            artifact.explainer  # noqa: B018 - parsed and checked now, not at the first request
        except ExplainerFileError as error:
            raise ArtifactError(f"{directory}: {error}") from None
        # Serve nothing that scores differently from the model that was evaluated.
        if parity_bytes is not None:
            expected = np.load(io.BytesIO(parity_bytes), allow_pickle=False)
            _check_forest(forest, encoder, str(directory), expected=expected)
        else:
            _check_forest(forest, encoder, str(directory), estimator=artifact.estimator)
        return artifact


def _read_parity(directory: Path, info: ModelInfo) -> bytes | None:
    """parity.npy's bytes, checked against their sha256 in the metadata (which the version
    covers); None for an artifact made before it existed."""
    if info.parity_sha256 is None:
        return None
    try:
        parity_bytes = (directory / PARITY_FILE).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{directory} is not a model artifact: missing {PARITY_FILE}") from None
    if hashlib.sha256(parity_bytes).hexdigest() != info.parity_sha256:
        raise ArtifactError(
            f"{directory}: {PARITY_FILE} does not match the sha256 in {METADATA_FILE}; "
            "the artifact was modified or is incomplete"
        )
    return parity_bytes


def _read_drift_profile(directory: Path, info: ModelInfo) -> bytes | None:
    """drift_profile.json's bytes, checked against their sha256 in the metadata and parsed once
    (a malformed profile refuses the artifact); None for an artifact made before it existed."""
    if info.drift_profile_sha256 is None:
        return None
    try:
        profile_bytes = (directory / DRIFT_PROFILE_FILE).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"{directory} is not a model artifact: missing {DRIFT_PROFILE_FILE}"
        ) from None
    if hashlib.sha256(profile_bytes).hexdigest() != info.drift_profile_sha256:
        raise ArtifactError(
            f"{directory}: {DRIFT_PROFILE_FILE} does not match the sha256 in {METADATA_FILE}; "
            "the artifact was modified or is incomplete"
        )
    try:
        ReferenceProfile.from_json(profile_bytes)
    except DriftProfileError as error:
        raise ArtifactError(f"{directory}: {error}") from None
    return profile_bytes


def _read_explainer(directory: Path, info: ModelInfo) -> bytes | None:
    """explainer.npz's bytes, checked against their sha256 in the metadata; None for an
    artifact made before it existed."""
    if info.explainer_sha256 is None:
        return None
    try:
        explainer_bytes = (directory / EXPLAINER_FILE).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"{directory} is not a model artifact: missing {EXPLAINER_FILE}"
        ) from None
    if hashlib.sha256(explainer_bytes).hexdigest() != info.explainer_sha256:
        raise ArtifactError(
            f"{directory}: {EXPLAINER_FILE} does not match the sha256 in {METADATA_FILE}; "
            "the artifact was modified or is incomplete"
        )
    return explainer_bytes
