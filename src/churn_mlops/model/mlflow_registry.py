"""The model registry on an MLflow tracking server (`CHURN_MLFLOW_TRACKING_URI`): the same
`ModelRegistry` interface, versions and errors as `LocalRegistry`, kept where a team already
tracks its runs.

- **Versions** are our content versions (`v` + 12 hex). Registering logs one run and makes one
  MLflow model version tagged with the content version (`mlflow_runs` says what is written);
  `get` searches by that tag, and an artifact already there is a no-op. Two processes
  registering the same *new* artifact at the same moment may both create an MLflow version:
  the registry then uses the older one.
- **Aliases** are MLflow registered-model aliases, which name MLflow version numbers.
- **History**: MLflow keeps none, so every promotion and removal adds a registered-model tag
  `churn_history.<alias>.<time_ns>.<random>` = `{"version", "at"}`; rollback deletes the
  entries it steps back over, as LocalRegistry pops its stack.
- **Artifacts** are downloaded on first use into a `VersionCache` (`cache_dir/<version>/`,
  verified, renamed into place), which is `ModelVersion.path` for `get`, `resolve`,
  `register`, `promote` and `rollback`. `versions()` reads the metadata from a tag instead:
  the paths it lists are where each version is, or will be, cached.

Races. MLflow has no transaction around an alias and its history. A promotion sets the alias
(one atomic write on the server), then adds its history entry under a key nobody else writes.
So two processes promoting at once lose no history entry, and the alias always names one of
the versions they promoted. What a race can lose is the order: the alias may name the racing
version whose entry is second to last, and a rollback then goes to the other racing version
rather than to the one before both. Two rollbacks at once may drop the same entries (together
they step back once). Entries are ordered by their writers' clocks.

An unreachable server fails in seconds: unless the environment says otherwise, MLflow's HTTP
client gets a 10 s timeout and 2 retries (its defaults, 120 s and 7 retries with backoff, take
about four minutes). MLflow is imported only when this backend is configured.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from churn_mlops.core.errors import InvalidRequest, ServiceError
from churn_mlops.core.model_info import ModelInfo
from churn_mlops.model.mlflow_runs import ARTIFACT_PATH, METADATA_TAG, VERSION_TAG, log_and_register
from churn_mlops.model.registry import (
    ALIAS_PATTERN,
    CHAMPION,
    VERSION_PATTERN,
    CorruptRegistry,
    InvalidAliasName,
    ModelVersion,
    NothingToRollBack,
    UnknownAlias,
    UnknownModelVersion,
)
from churn_mlops.model.version_cache import VersionCache

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion as MlflowVersion

HISTORY_TAG_PREFIX = "churn_history."
# CHURN_MODEL_REGISTRY_DIR's default, relative to where the command runs.
DEFAULT_CACHE_DIR = Path("var/models/mlflow-cache")
INSTALL_HINT = "pip install 'churn-mlops[mlflow]'"
# An alias write that lost a race to create the alias is tried again (see `_point`).
ALIAS_WRITE_ATTEMPTS = 3
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # MLflow prints run URLs on stdout, where `models register` prints only the version.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# MLflow refuses these alias names: `models:/churn@v3` would be ambiguous.
_MLFLOW_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")


class MlflowUnavailable(ServiceError):
    """MLflow is not installed, or its tracking server does not answer or fails."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ReservedAliasName(InvalidAliasName):
    def __init__(self, alias: str) -> None:
        InvalidRequest.__init__(
            self, f"alias {alias!r} is reserved by MLflow ('latest', and 'v' followed by digits)"
        )
        self.alias = alias


@dataclass(frozen=True)
class _HistoryEntry:
    tag: str
    version: str | None  # None: the alias was removed
    at: str


def _check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidAliasName(alias)
    if _MLFLOW_RESERVED_ALIAS.fullmatch(alias):
        raise ReservedAliasName(alias)
    return alias


class MlflowRegistry:
    """The registry on an MLflow tracking server; see the module docstring."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str = "churn",
        cache_dir: Path = DEFAULT_CACHE_DIR,
        experiment_name: str | None = None,
    ) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
        except ImportError as error:
            raise MlflowUnavailable(
                f"the MLflow model registry ({tracking_uri}) needs MLflow: {INSTALL_HINT} ({error})"
            ) from None
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment_name = experiment_name or model_name
        self.cache = VersionCache(cache_dir)
        self._client: MlflowClient = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        self._mlflow_error = MlflowException
        # MLflow version number -> content version. A number's artifacts never change, so a
        # worker polling `aliases()` asks one question per poll, not one more per alias.
        self._versions_of_numbers: dict[str, str] = {}

    @property
    def location(self) -> str:
        return f"MLflow {self.tracking_uri} (registered model {self.model_name!r})"

    def register(
        self, artifact_dir: Path, *, run_metrics: Mapping[str, float] | None = None
    ) -> ModelVersion:
        """Add the artifact in `artifact_dir` (verified) as a run and a model version, with
        `run_metrics` (cross-validated ones, say) beside its hold-out metrics; an artifact
        already registered is a no-op."""
        with self.cache.verified_copy(artifact_dir) as (copy, info):
            with self._server():
                if self._find(info.version) is None:
                    log_and_register(
                        self._client,
                        self.model_name,
                        self.experiment_name,
                        copy=copy,
                        info=info,
                        source=artifact_dir,
                        extra_metrics=run_metrics or {},
                    )
            path = self.cache.keep(copy, info.version)
        return ModelVersion(info.version, path, info)

    def versions(self) -> list[ModelVersion]:
        with self._server():
            found = self._search(f"name='{self.model_name}'")
        oldest: dict[str, MlflowVersion] = {}
        for candidate in sorted(found, key=lambda mv: int(mv.version)):
            # A version without our tag was registered by something else: not ours to list.
            version = candidate.tags.get(VERSION_TAG)
            if version and version not in oldest:
                oldest[version] = candidate
        listed = [
            ModelVersion(version, self.cache.path(version), self._tagged_info(mv))
            for version, mv in oldest.items()
        ]
        return sorted(listed, key=lambda v: (v.info.created_at, v.version))

    def get(self, version: str) -> ModelVersion:
        with self._server():
            return self._local(version, self._existing(version))

    def resolve(self, alias: str) -> ModelVersion | None:
        _check_alias(alias)
        with self._server():
            number = self._registered()[0].get(alias)
            if number is None:
                return None
            mv = self._client.get_model_version(self.model_name, number)
            return self._local(self._content_version(mv), mv)

    def promote(self, version: str, alias: str = CHAMPION) -> ModelVersion:
        _check_alias(alias)
        with self._server():
            mv = self._existing(version)
            # Downloaded and verified before the alias names it: a corrupt version is refused.
            promoted = self._local(version, mv)
            # The alias first: a crash before the history entry leaves a history whose
            # rollback still returns to the version before this one.
            self._point(alias, mv.version)
            self._record(alias, version)
        return promoted

    def rollback(self, alias: str = CHAMPION) -> ModelVersion:
        _check_alias(alias)
        with self._server():
            numbers, tags = self._registered()
            history = self._history(tags, alias)
            if alias not in numbers and not history:
                raise UnknownAlias(alias)
            current = self._alias_version(numbers, alias)
            kept = list(history)
            while kept and kept[-1].version in (current, None):
                kept.pop()
            target = kept[-1].version if kept else None
            if target is None:
                raise NothingToRollBack(alias, current or "nothing")
            mv = self._existing(target)
            restored = self._local(target, mv)
            # The history first: a crash before the alias moves leaves a rollback that, run
            # again, finishes this one.
            for entry in history[len(kept) :]:
                self._client.delete_registered_model_tag(self.model_name, entry.tag)
            self._point(alias, mv.version)
        return restored

    def aliases(self) -> dict[str, str]:
        with self._server():
            numbers = self._registered()[0]
            return {
                alias: self._version_of_number(number) for alias, number in sorted(numbers.items())
            }

    def history(self, alias: str) -> list[tuple[str, str]]:
        """The versions `alias` has pointed to, oldest first, with when each was promoted."""
        _check_alias(alias)
        with self._server():
            numbers, tags = self._registered()
        entries = self._history(tags, alias)
        if not entries and alias not in numbers:
            raise UnknownAlias(alias)
        return [(entry.version, entry.at) for entry in entries if entry.version]

    def remove_alias(self, alias: str) -> str:
        _check_alias(alias)
        with self._server():
            version = self._alias_version(self._registered()[0], alias)
            if version is None:
                raise UnknownAlias(alias)
            self._client.delete_registered_model_alias(self.model_name, alias)
            self._record(alias, None)
        return version

    @contextmanager
    def _server(self) -> Iterator[None]:
        """MLflow's own failures (no answer, a refusal not handled here) as a ServiceError."""
        try:
            yield
        except self._mlflow_error as error:
            raise MlflowUnavailable(
                f"MLflow tracking server {self.tracking_uri}: {error.message}"
            ) from None

    def _search(self, filter_string: str) -> list[MlflowVersion]:
        found: list[MlflowVersion] = []
        page_token = None
        while True:
            page = self._client.search_model_versions(filter_string, page_token=page_token)
            found.extend(page)
            page_token = page.token
            if not page_token:
                return found

    def _find(self, version: str) -> MlflowVersion | None:
        """The oldest MLflow version carrying content version `version`, if any."""
        if not VERSION_PATTERN.fullmatch(version):  # also keeps the filter below well-formed
            return None
        tagged = self._search(f"name='{self.model_name}' and tags.{VERSION_TAG}='{version}'")
        return min(tagged, key=lambda mv: int(mv.version), default=None)

    def _existing(self, version: str) -> MlflowVersion:
        found = self._find(version)
        if found is None:
            raise UnknownModelVersion(version)
        return found

    def _describe(self, mv: MlflowVersion) -> str:
        return f"version {mv.version} of MLflow model {self.model_name!r}"

    def _content_version(self, mv: MlflowVersion) -> str:
        version = mv.tags.get(VERSION_TAG)
        if not version or not VERSION_PATTERN.fullmatch(version):
            raise CorruptRegistry(
                f"{self._describe(mv)} has no valid {VERSION_TAG} tag: "
                "it was not registered by churn-mlops"
            )
        return version

    def _alias_version(self, numbers: Mapping[str, str], alias: str) -> str | None:
        """The content version `alias` names, given the aliases' MLflow version numbers."""
        number = numbers.get(alias)
        if number is None:
            return None
        return self._version_of_number(number)

    def _version_of_number(self, number: str) -> str:
        if number not in self._versions_of_numbers:
            mv = self._client.get_model_version(self.model_name, number)
            self._versions_of_numbers[number] = self._content_version(mv)
        return self._versions_of_numbers[number]

    def _tagged_info(self, mv: MlflowVersion) -> ModelInfo:
        try:
            return ModelInfo.model_validate_json(mv.tags.get(METADATA_TAG, ""))
        except ValidationError as error:
            raise CorruptRegistry(
                f"{self._describe(mv)}: unreadable {METADATA_TAG} tag: {error}"
            ) from None

    def _local(self, version: str, mv: MlflowVersion) -> ModelVersion:
        """`version` as a verified local directory, downloaded unless cached."""
        run_id = mv.run_id
        if run_id is None:
            raise CorruptRegistry(f"{self._describe(mv)} comes from no run: no artifacts")

        def download(into: Path) -> Path:
            return Path(self._client.download_artifacts(run_id, ARTIFACT_PATH, str(into)))

        path = self.cache.fetch(version, download, self._describe(mv))
        return ModelVersion(version, path, self.cache.info(version))

    def _registered(self) -> tuple[dict[str, str], dict[str, str]]:
        """The registered model's aliases (alias -> MLflow version) and tags; none if absent."""
        try:
            model = self._client.get_registered_model(self.model_name)
        except self._mlflow_error as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, {}
            raise
        return dict(model.aliases), dict(model.tags)

    def _history(self, tags: Mapping[str, str], alias: str) -> list[_HistoryEntry]:
        prefix = f"{HISTORY_TAG_PREFIX}{alias}."
        entries = []
        for tag in sorted(key for key in tags if key.startswith(prefix)):
            try:
                document = json.loads(tags[tag])
                entries.append(_HistoryEntry(tag, document["version"], document["at"]))
            except (ValueError, TypeError, KeyError):
                raise CorruptRegistry(
                    f"MLflow model {self.model_name!r}: unreadable history tag {tag}"
                ) from None
        return entries

    def _point(self, alias: str, number: str) -> None:
        """Set `alias` to MLflow version `number`, last writer wins.

        MLflow's server reads the alias, then inserts or updates it: two first writes of one
        alias at once make the later insert fail on the alias's unique key (a BAD_REQUEST
        naming an IntegrityError). The alias exists by then, so the same write again is an
        update; a failure with the alias still absent is a real one."""
        for attempt in range(ALIAS_WRITE_ATTEMPTS):
            try:
                self._client.set_registered_model_alias(self.model_name, alias, number)
                return
            except self._mlflow_error:
                if attempt + 1 == ALIAS_WRITE_ATTEMPTS or alias not in self._registered()[0]:
                    raise

    def _record(self, alias: str, version: str | None) -> None:
        """Add one history entry under a key of its own: concurrent writers never collide."""
        tag = f"{HISTORY_TAG_PREFIX}{alias}.{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"
        at = datetime.now(UTC).isoformat(timespec="seconds")
        value = json.dumps({"version": version, "at": at})
        self._client.set_registered_model_tag(self.model_name, tag, value)
