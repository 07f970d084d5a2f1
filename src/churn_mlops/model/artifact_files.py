"""Reading the artifact's optional files, each checked against its sha256 in the metadata
(which the version covers): the feature schema, the parity probes, the drift profile and the
explainer. A file whose sha256 the metadata does not give is absent in artifacts made before
it existed, and reads as None.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from churn_mlops.core.model_info import ModelInfo
from churn_mlops.core.schema import FeatureSchema, SchemaError
from churn_mlops.model.drift_profile import (
    DRIFT_PROFILE_FILE,
    DriftProfileError,
    ReferenceProfile,
)
from churn_mlops.model.parity import LEGACY_PARITY_FILE, PARITY_FILE

METADATA_FILE = "metadata.json"
SCHEMA_FILE = "schema.json"
EXPLAINER_FILE = "explainer.npz"


class ArtifactError(RuntimeError):
    """The artifact directory is missing, incomplete or does not match its version."""


def _checked(directory: Path, names: tuple[str, ...], sha256: str | None) -> bytes | None:
    """The bytes of the first of `names` present, checked against `sha256`; None when the
    metadata gives no sha256 (an artifact made before the file existed)."""
    if sha256 is None:
        return None
    for name in names:
        try:
            data = (directory / name).read_bytes()
        except FileNotFoundError:
            continue
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ArtifactError(
                f"{directory}: {name} does not match the sha256 in {METADATA_FILE}; "
                "the artifact was modified or is incomplete"
            )
        return data
    raise ArtifactError(f"{directory} is not a model artifact: missing {names[0]}")


def read_parity_file(directory: Path, info: ModelInfo) -> bytes | None:
    """parity.npz (rows and probabilities), or an older artifact's parity.npy."""
    return _checked(directory, (PARITY_FILE, LEGACY_PARITY_FILE), info.parity_sha256)


def read_schema_file_bytes(directory: Path, info: ModelInfo) -> bytes | None:
    return _checked(directory, (SCHEMA_FILE,), info.schema_sha256)


def read_explainer(directory: Path, info: ModelInfo) -> bytes | None:
    return _checked(directory, (EXPLAINER_FILE,), info.explainer_sha256)


def read_drift_profile(directory: Path, info: ModelInfo) -> bytes | None:
    """drift_profile.json, parsed once (a malformed profile refuses the artifact)."""
    profile_bytes = _checked(directory, (DRIFT_PROFILE_FILE,), info.drift_profile_sha256)
    if profile_bytes is not None:
        try:
            ReferenceProfile.from_json(profile_bytes)
        except DriftProfileError as error:
            raise ArtifactError(f"{directory}: {error}") from None
    return profile_bytes


def read_schema(schema_bytes: bytes | None, info: ModelInfo) -> FeatureSchema:
    """The artifact's feature schema. An artifact made before schema.json existed was trained
    on the shipped Telco features, whose schema it then gets (checked against its feature
    list)."""
    if schema_bytes is None:
        from churn_mlops.data import telco_schema

        schema = telco_schema()
    else:
        try:
            schema = FeatureSchema.from_dict(json.loads(schema_bytes))
        except (ValueError, KeyError, TypeError) as error:
            raise SchemaError(f"unreadable {SCHEMA_FILE}: {error}") from None
    if list(schema.names) != list(info.features):
        raise SchemaError(
            f"the feature schema's features are not the metadata's ({len(schema.names)} "
            f"against {len(info.features)})"
        )
    return schema
