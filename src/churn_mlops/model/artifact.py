"""The versioned model artifact: a directory with the model, its compiled forest, its encoder,
its feature schema and metadata.json.

The version is a content hash of everything that decides a prediction: the compiled forest
(the exact decision function), the encoder, and the metadata without `created_at`, which holds
the sha256 of the feature schema (schema.json), of the parity probes and of the other files.
The pickled estimator is left out of it because its bytes also record incidental state (the
thread count its binning ran with), which would give the same model another version on another
machine; it is tied to the artifact by its sha256 in the metadata instead. So the same data and
seed give the same version, and a changed file is caught on load. The API scores with the
compiled forest; a load refuses an artifact whose forest disagrees with the estimator's
probabilities on the probe rows stored at train time (parity.npz), so a load needs neither the
training data nor the estimator: a running worker swapping models verifies one in about 30 ms
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
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from churn_mlops.core.model_info import ModelInfo
from churn_mlops.core.schema import FeatureSchema, SchemaError
from churn_mlops.model.artifact_files import (
    EXPLAINER_FILE,
    METADATA_FILE,
    SCHEMA_FILE,
    ArtifactError,
    read_drift_profile,
    read_explainer,
    read_parity_file,
    read_schema,
    read_schema_file_bytes,
)
from churn_mlops.model.compiled import (
    CompiledForest,
    ForestFileError,
    ParityError,
    check_parity,
    check_probabilities,
)
from churn_mlops.model.drift_profile import DRIFT_PROFILE_FILE, ReferenceProfile
from churn_mlops.model.features import EncoderError, FeatureEncoder, FloatMatrix
from churn_mlops.model.parity import (
    LEGACY_PARITY_FILE,
    PARITY_FILE,
    ParityFileError,
    parity_bytes,
    read_parity,
    telco_parity_rows,
)
from churn_mlops.model.treeshap import ExplainerFileError, TreeExplainer

MODEL_FILE = "model.joblib"
ENCODER_FILE = "encoder.json"
FOREST_FILE = "forest.npz"
__all__ = [
    "DRIFT_PROFILE_FILE",
    "ENCODER_FILE",
    "EXPLAINER_FILE",
    "LEGACY_PARITY_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "PARITY_FILE",
    "SCHEMA_FILE",
    "ArtifactError",
    "ModelArtifact",
    "content_version",
]


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
    if unversioned.get("schema_sha256") is None:
        # Nor those made before schema.json existed (the Telco features).
        unversioned.pop("schema_sha256", None)
    digest.update(_canonical_json(unversioned))
    return "v" + digest.hexdigest()[:12]


def _check_forest(
    forest: CompiledForest,
    rows: FloatMatrix,
    where: str,
    *,
    estimator: Any = None,
    expected: npt.NDArray[np.float64] | None = None,
) -> None:
    """Refuse a forest that disagrees with the estimator, or with its stored probabilities."""
    try:
        if expected is not None:
            check_probabilities(forest, expected, rows)
        else:
            check_parity(forest, estimator, rows)
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
    # parity.npz as written: the probe rows and the estimator's probabilities on them (or, in
    # artifacts made before it, parity.npy: the probabilities on the Telco probe rows); None in
    # artifacts made before either.
    parity_bytes: bytes | None = field(default=None, repr=False)
    # drift_profile.json as written: the training rows' reference profile; None in artifacts
    # made before it existed (served with drift monitoring off).
    drift_profile_bytes: bytes | None = field(default=None, repr=False)
    # explainer.npz as written: the trees' arrays for reason codes (TreeSHAP); None in
    # artifacts made before it existed (they answer no reasons).
    explainer_bytes: bytes | None = field(default=None, repr=False)
    # schema.json as written; None in artifacts made before it (the Telco features).
    schema_bytes: bytes | None = field(default=None, repr=False)

    @cached_property
    def schema(self) -> FeatureSchema:
        """The features this model reads: what requests, tensors and stored customers give."""
        return read_schema(self.schema_bytes, self.info)

    @cached_property
    def parity_rows(self) -> FloatMatrix:
        """The rows the compiled forest is checked on: stored at train time, or for an older
        artifact the shipped Telco rows."""
        if self.parity_bytes is not None and self.parity_bytes.startswith(b"PK"):
            return read_parity(self.parity_bytes)[0]
        return telco_parity_rows(self.encoder)

    def _stored_probabilities(self) -> npt.NDArray[np.float64] | None:
        if self.parity_bytes is None:
            return None
        if self.parity_bytes.startswith(b"PK"):
            return read_parity(self.parity_bytes)[1]
        probabilities: npt.NDArray[np.float64] = np.load(
            io.BytesIO(self.parity_bytes), allow_pickle=False
        )
        return probabilities

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
        schema: FeatureSchema,
        parity_rows: FloatMatrix,
        drift_profile: ReferenceProfile | None = None,
    ) -> ModelArtifact:
        """Compile the estimator, check the compiled forest against it on `parity_rows`, and
        stamp `info` with the content version of the estimator, forest, encoder and `schema`
        (and of the probes and `drift_profile`, through their sha256 in the metadata)."""
        model_bytes = _pickle_bytes(estimator)
        forest = CompiledForest.from_estimator(estimator)
        _check_forest(forest, parity_rows, "new artifact", estimator=estimator)
        forest_bytes = forest.to_bytes()
        expected = np.asarray(estimator.predict_proba(parity_rows)[:, 1], dtype=np.float64)
        probes = parity_bytes(parity_rows, expected)
        schema_bytes = schema.canonical_json()
        info = info.model_copy(
            update={
                "parity_sha256": hashlib.sha256(probes).hexdigest(),
                "schema_sha256": hashlib.sha256(schema_bytes).hexdigest(),
            }
        )
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
            probes,
            drift_profile_bytes=profile_bytes,
            explainer_bytes=explainer_bytes,
            schema_bytes=schema_bytes,
        )
        artifact.__dict__["estimator"] = estimator  # the cached_property, already known
        artifact.__dict__["explainer"] = explainer
        return artifact

    def rebuilt(self, info: ModelInfo, estimator: Any = None) -> ModelArtifact:
        """This artifact built again with other metadata (or another estimator): same schema,
        probes and drift profile; a new version."""
        return ModelArtifact.build(
            self.estimator if estimator is None else estimator,
            self.encoder,
            info,
            schema=self.schema,
            parity_rows=self.parity_rows,
            drift_profile=self.drift_profile,
        )

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
                name = PARITY_FILE if self.parity_bytes.startswith(b"PK") else LEGACY_PARITY_FILE
                (staging / name).write_bytes(self.parity_bytes)
            if self.schema_bytes is not None:
                (staging / SCHEMA_FILE).write_bytes(self.schema_bytes)
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
        schema_bytes = read_schema_file_bytes(directory, info)
        try:
            schema = read_schema(schema_bytes, info)
            encoder = FeatureEncoder.from_dict(encoder_doc, schema)
            forest = CompiledForest.from_bytes(forest_bytes)
        except (SchemaError, EncoderError, ForestFileError) as error:
            raise ArtifactError(f"{directory}: {error}") from None
        artifact = cls(
            encoder,
            info,
            model_bytes,
            forest,
            forest_bytes,
            read_parity_file(directory, info),
            drift_profile_bytes=read_drift_profile(directory, info),
            explainer_bytes=read_explainer(directory, info),
            schema_bytes=schema_bytes,
        )
        artifact.__dict__["schema"] = schema
        profile = artifact.drift_profile
        if profile is not None and [b.name for b in profile.features] != list(schema.names):
            raise ArtifactError(f"{directory}: the drift profile was made for other features")
        try:
            artifact.explainer  # noqa: B018 - parsed and checked now, not at the first request
            # Serve nothing that scores differently from the model that was evaluated.
            stored = artifact._stored_probabilities()
            if stored is not None:
                _check_forest(forest, artifact.parity_rows, str(directory), expected=stored)
            else:
                _check_forest(
                    forest, artifact.parity_rows, str(directory), estimator=artifact.estimator
                )
        except (ExplainerFileError, ParityFileError) as error:
            raise ArtifactError(f"{directory}: {error}") from None
        return artifact
