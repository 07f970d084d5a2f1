"""The versioned model artifact: a directory with the model, its encoder and metadata.json.

The version is a content hash of everything that decides a prediction (model bytes, encoder,
metadata without `created_at`), so the same data and seed give the same version, and a changed
file is caught on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
from pydantic import ValidationError

from churn_mlops.model.features import FeatureEncoder
from churn_mlops.schemas import ModelInfo

MODEL_FILE = "model.joblib"
ENCODER_FILE = "encoder.json"
METADATA_FILE = "metadata.json"


class ArtifactError(RuntimeError):
    """The artifact directory is missing, incomplete or does not match its version."""


def _canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _pickle_bytes(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def content_version(model_bytes: bytes, encoder: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The version string of an artifact with these contents."""
    digest = hashlib.sha256()
    digest.update(model_bytes)
    digest.update(_canonical_json(encoder))
    digest.update(_canonical_json({**metadata, "version": "", "created_at": ""}))
    return "v" + digest.hexdigest()[:12]


@dataclass(frozen=True)
class ModelArtifact:
    """A trained estimator with the encoder its rows need and what is known about it."""

    estimator: Any
    encoder: FeatureEncoder
    info: ModelInfo
    # The estimator's bytes as hashed: re-pickling a loaded estimator need not give them back.
    model_bytes: bytes

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def threshold(self) -> float:
        return self.info.threshold

    @classmethod
    def build(cls, estimator: Any, encoder: FeatureEncoder, info: ModelInfo) -> ModelArtifact:
        """Stamp `info` with the content version of this estimator and encoder."""
        model_bytes = _pickle_bytes(estimator)
        version = content_version(model_bytes, encoder.to_dict(), info.model_dump(mode="json"))
        return cls(estimator, encoder, info.model_copy(update={"version": version}), model_bytes)

    def save(self, directory: Path) -> Path:
        """Write the artifact to `directory` atomically, replacing what was there."""
        directory = directory.resolve()
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            (staging / MODEL_FILE).write_bytes(self.model_bytes)
            (staging / ENCODER_FILE).write_text(json.dumps(self.encoder.to_dict(), indent=2))
            (staging / METADATA_FILE).write_text(self.info.model_dump_json(indent=2))
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
        """Read an artifact and check it against its version; only load artifacts you made."""
        paths = [directory / name for name in (MODEL_FILE, ENCODER_FILE, METADATA_FILE)]
        if missing := [p.name for p in paths if not p.is_file()]:
            raise ArtifactError(
                f"{directory} is not a model artifact: missing {', '.join(missing)}"
            )
        model_bytes = paths[0].read_bytes()
        try:
            encoder_doc = json.loads(paths[1].read_text())
            metadata = json.loads(paths[2].read_text())
            info = ModelInfo.model_validate(metadata)
        except (ValueError, ValidationError) as error:
            raise ArtifactError(f"{directory}: unreadable metadata or encoder: {error}") from None
        expected = content_version(model_bytes, encoder_doc, info.model_dump(mode="json"))
        if expected != info.version:
            raise ArtifactError(
                f"{directory}: contents hash to {expected} but metadata says {info.version}; "
                "the artifact was modified or is incomplete"
            )
        # The model file is a pickle, which runs code when loaded: serve only artifacts made by
        # `churn-mlops train` (the hash above catches corruption, not a forger).
        estimator = joblib.load(io.BytesIO(model_bytes))
        return cls(estimator, FeatureEncoder.from_dict(encoder_doc), info, model_bytes)
