"""The model registry: which model versions exist, and which one each alias (`champion`,
`challenger`) names.

`ModelRegistry` is the one interface; `LocalRegistry` is the embedded backend, a directory:

    <root>/<version>/        one artifact directory per version, named by its content version
    <root>/aliases.json      every alias's current version and its history
    <root>/.aliases.lock     flock'ed around every read-modify-write of aliases.json

A version directory is written once: `register` copies an artifact into a hidden staging
directory, verifies the copy with `ModelArtifact.load` (content hash and compiled-forest
parity), then renames it into place, so a reader never sees half a version and registering the
same artifact twice is a no-op. aliases.json is replaced whole (a temporary file in the same
directory, fsync, `os.replace`), so readers need no lock; writers take an exclusive `flock` so
that two processes promoting at once both land in the history instead of one overwriting the
other.

An alias's history is a stack of the versions it has pointed to, the current one last: `promote`
pushes (always, even the current version again, so every promotion is recorded), `rollback`
pops back to the most recent entry naming a different version.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from churn_mlops.core.errors import Conflict, InvalidRequest, NotFound, ServiceError
from churn_mlops.core.model_info import ModelInfo
from churn_mlops.model.artifact import (
    ENCODER_FILE,
    FOREST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelArtifact,
)
from churn_mlops.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES_FILE = "aliases.json"
LOCK_FILE = ".aliases.lock"
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# What content_version produces; anything else cannot be a directory of ours (nor "../x").
VERSION_PATTERN = re.compile(r"^v[0-9a-f]{12}$")
_ARTIFACT_FILES = (MODEL_FILE, FOREST_FILE, ENCODER_FILE, METADATA_FILE)


class UnknownModelVersion(NotFound):
    def __init__(self, version: str) -> None:
        super().__init__(f"model version {version!r} is not in the registry")
        self.version = version


class UnknownAlias(NotFound):
    def __init__(self, alias: str) -> None:
        super().__init__(f"alias {alias!r} names no model version")
        self.alias = alias


class InvalidAliasName(InvalidRequest):
    def __init__(self, alias: str) -> None:
        super().__init__(
            f"alias {alias!r} is not a valid name: lower-case letters, digits, '_' and '-', "
            "starting with a letter, at most 32 characters"
        )
        self.alias = alias


class InvalidArtifact(InvalidRequest):
    """A directory given to `register` that is not a loadable, consistent model artifact."""


class NothingToRollBack(Conflict):
    def __init__(self, alias: str, version: str) -> None:
        super().__init__(f"alias {alias!r} has no version before {version} to roll back to")
        self.alias = alias


class CorruptRegistry(ServiceError):
    """The registry's own files are unreadable: a person edited them, or the disk failed."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: its version, where its artifact directory is, and its metadata."""

    version: str
    path: Path
    info: ModelInfo


class ModelRegistry(Protocol):
    """Registered model versions and the aliases that name them; every backend implements it."""

    def register(
        self, artifact_dir: Path, *, run_metrics: Mapping[str, float] | None = None
    ) -> ModelVersion:
        """Add the artifact in `artifact_dir` (verified); a version already there is a no-op.
        `run_metrics` (the cross-validated ROC AUC, say) go where the backend keeps runs."""
        ...

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        ...

    def get(self, version: str) -> ModelVersion: ...

    def resolve(self, alias: str) -> ModelVersion | None:
        """The version `alias` names, or None when it names none."""
        ...

    def promote(self, version: str, alias: str = CHAMPION) -> ModelVersion:
        """Point `alias` at `version`, remembering what it pointed at before."""
        ...

    def rollback(self, alias: str = CHAMPION) -> ModelVersion:
        """Point `alias` back at its previous version, and return that version."""
        ...

    def aliases(self) -> dict[str, str]:
        """Every alias and the version it names."""
        ...

    def history(self, alias: str) -> list[tuple[str, str]]:
        """The versions `alias` has pointed to, oldest first, with when each was promoted."""
        ...

    def remove_alias(self, alias: str) -> str:
        """Make `alias` name nothing (its history is kept); the version it named."""
        ...

    @property
    def location(self) -> str:
        """Where the registry is, for messages: a directory or a tracking server."""
        ...


def open_registry(settings: Settings) -> ModelRegistry:
    """The registry `settings` configure: MLflow's when a tracking URI is set, else local."""
    if settings.mlflow_tracking_uri:
        from churn_mlops.model.mlflow_registry import MlflowRegistry

        return MlflowRegistry(
            settings.mlflow_tracking_uri,
            settings.mlflow_model_name,
            cache_dir=settings.model_registry_dir / "mlflow-cache",
        )
    return LocalRegistry(settings.model_registry_dir)


def _check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidAliasName(alias)
    return alias


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LocalRegistry:
    """The registry in a local directory (`CHURN_MODEL_REGISTRY_DIR`); see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def register(
        self, artifact_dir: Path, *, run_metrics: Mapping[str, float] | None = None
    ) -> ModelVersion:
        # The local registry keeps artifacts, not runs: `run_metrics` have nowhere to go (the
        # hold-out metrics are in the artifact's metadata).
        if missing := [name for name in _ARTIFACT_FILES if not (artifact_dir / name).is_file()]:
            raise InvalidArtifact(
                f"{artifact_dir} is not a model artifact: missing {', '.join(missing)}"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            # Every file of the artifact, not only the required ones: files that newer
            # artifacts add (schema.json, parity.npz) are checked by the load and must travel.
            for path in artifact_dir.iterdir():
                if path.is_file() and not path.name.startswith("."):
                    shutil.copyfile(path, staging / path.name)
            # Verify the copy, not the original: what is stored is what was checked (one load,
            # about 0.6 s: the parity check scores the shipped dataset twice).
            version = self._verified_version(staging, artifact_dir)
            target = self.root / version
            if not target.is_dir():
                try:
                    staging.rename(target)
                except OSError:
                    if not target.is_dir():
                        raise
                    # Another process registered it first: same content, same name.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(version)

    @staticmethod
    def _verified_version(staging: Path, source: Path) -> str:
        try:
            return ModelArtifact.load(staging).version
        except ArtifactError as error:
            reason = str(error).removeprefix(f"{staging}: ")
            raise InvalidArtifact(f"{source} is not a valid model artifact: {reason}") from None

    def versions(self) -> list[ModelVersion]:
        if not self.root.is_dir():
            return []
        found = [
            self.get(path.name)
            for path in self.root.iterdir()
            if VERSION_PATTERN.fullmatch(path.name) and path.is_dir()
        ]
        return sorted(found, key=lambda v: (v.info.created_at, v.version))

    def get(self, version: str) -> ModelVersion:
        path = self.root / version
        if not VERSION_PATTERN.fullmatch(version) or not path.is_dir():
            raise UnknownModelVersion(version)
        try:
            info = ModelInfo.model_validate_json((path / METADATA_FILE).read_bytes())
        except (OSError, ValidationError) as error:
            raise CorruptRegistry(f"{path}: unreadable {METADATA_FILE}: {error}") from None
        return ModelVersion(version, path, info)

    def resolve(self, alias: str) -> ModelVersion | None:
        entry = self._read_aliases().get(_check_alias(alias))
        return self.get(entry["version"]) if entry and entry["version"] else None

    def promote(self, version: str, alias: str = CHAMPION) -> ModelVersion:
        _check_alias(alias)
        promoted = self.get(version)
        with self._locked_aliases() as document:
            entry = document.setdefault(alias, {"version": version, "history": []})
            entry["version"] = version
            entry["history"].append({"version": version, "at": _now()})
        return promoted

    def rollback(self, alias: str = CHAMPION) -> ModelVersion:
        _check_alias(alias)
        with self._locked_aliases() as document:
            entry = document.get(alias)
            if entry is None:
                raise UnknownAlias(alias)
            history: list[dict[str, str]] = entry["history"]
            current = entry["version"]
            while history and history[-1]["version"] in (current, None):
                history.pop()
            if not history:
                raise NothingToRollBack(alias, current)
            entry["version"] = history[-1]["version"]
        return self.get(entry["version"])

    def aliases(self) -> dict[str, str]:
        return {
            alias: entry["version"]
            for alias, entry in sorted(self._read_aliases().items())
            if entry["version"]
        }

    def history(self, alias: str) -> list[tuple[str, str]]:
        """The versions `alias` has pointed to, oldest first, with when each was promoted."""
        entry = self._read_aliases().get(_check_alias(alias))
        if entry is None:
            raise UnknownAlias(alias)
        return [(item["version"], item["at"]) for item in entry["history"] if item["version"]]

    def remove_alias(self, alias: str) -> str:
        _check_alias(alias)
        with self._locked_aliases() as document:
            entry = document.get(alias)
            if entry is None or entry.get("version") is None:
                raise UnknownAlias(alias)
            version: str = entry["version"]
            entry["version"] = None
            entry["history"].append({"version": None, "at": _now()})
        return version

    def _read_aliases(self) -> dict[str, Any]:
        path = self.root / ALIASES_FILE
        try:
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise CorruptRegistry(f"{path} is not valid JSON: {error}") from None
        aliases = document.get("aliases") if isinstance(document, dict) else None
        if not isinstance(aliases, dict):
            raise CorruptRegistry(f"{path} has no 'aliases' object")
        return aliases

    @contextmanager
    def _locked_aliases(self) -> Iterator[dict[str, Any]]:
        """The aliases to change in place, written back (atomically) when the block exits
        without an exception; other writers wait on the lock meanwhile."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                aliases = self._read_aliases()
                yield aliases
                self._write_aliases(aliases)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_aliases(self, aliases: dict[str, Any]) -> None:
        text = json.dumps({"aliases": aliases}, indent=2, sort_keys=True) + "\n"
        descriptor, temporary = tempfile.mkstemp(prefix=".aliases-", dir=self.root)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.root / ALIASES_FILE)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is.
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
