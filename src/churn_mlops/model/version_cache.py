"""Local, verified copies of model versions whose artifacts live elsewhere (MLflow's artifact
store): `<root>/<version>/`, one directory per content version.

A copy is made in a hidden temporary directory under `root`, verified there with
`ModelArtifact.load` (content hash and compiled-forest parity, about 0.6 s), then renamed into
place: no reader, in this process or in a concurrent worker, ever sees half a copy, and two
processes fetching the same version at once both end with the one directory. A version in the
cache is never fetched again: its name is the hash of its content.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from churn_mlops.core.model_info import ModelInfo
from churn_mlops.model.artifact import (
    ENCODER_FILE,
    FOREST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelArtifact,
)
from churn_mlops.model.registry import CorruptRegistry, InvalidArtifact

# What every artifact has; a newer one may hold more (see `verified_copy`).
REQUIRED_FILES = (MODEL_FILE, FOREST_FILE, ENCODER_FILE, METADATA_FILE)


def _install(source: Path, target: Path) -> None:
    """Rename a verified directory into place; another process may have put the same there."""
    try:
        source.rename(target)
    except OSError:
        if not target.is_dir():
            raise


class VersionCache:
    """Verified artifact directories under `root`, named by content version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        return self.root / version

    @contextmanager
    def verified_copy(self, artifact_dir: Path) -> Iterator[tuple[Path, ModelInfo]]:
        """A verified copy of the artifact in `artifact_dir` (what is stored elsewhere is what
        was checked) and its metadata; removed after the block unless `keep` took it."""
        if missing := [name for name in REQUIRED_FILES if not (artifact_dir / name).is_file()]:
            raise InvalidArtifact(
                f"{artifact_dir} is not a model artifact: missing {', '.join(missing)}"
            )
        staging = self._staging(".staging-")
        try:
            # Every file of the artifact, not only the required ones: files that newer
            # artifacts add (parity.npy) are checked by the load below and must travel too.
            for path in artifact_dir.iterdir():
                if path.is_file() and not path.name.startswith("."):
                    shutil.copyfile(path, staging / path.name)
            try:
                info = ModelArtifact.load(staging).info
            except ArtifactError as error:
                reason = str(error).removeprefix(f"{staging}: ")
                raise InvalidArtifact(
                    f"{artifact_dir} is not a valid model artifact: {reason}"
                ) from None
            yield staging, info
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def keep(self, copy: Path, version: str) -> Path:
        """Put a verified copy in the cache as `version`; its directory there."""
        target = self.path(version)
        _install(copy, target)
        return target

    def fetch(self, version: str, download: Callable[[Path], Path], source: str) -> Path:
        """The directory of `version`: cached, or downloaded now by `download` (given an empty
        directory, it returns the artifact directory it wrote there) and verified. `source`
        names where it came from, for errors."""
        target = self.path(version)
        if target.is_dir():
            return target
        staging = self._staging(".download-")
        try:
            downloaded = download(staging)
            try:
                loaded = ModelArtifact.load(downloaded).version
            except ArtifactError as error:
                raise CorruptRegistry(f"{source} ({version}) does not verify: {error}") from None
            if loaded != version:
                raise CorruptRegistry(f"{source} is tagged {version} but its artifact is {loaded}")
            _install(downloaded, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def info(self, version: str) -> ModelInfo:
        """The metadata of a cached version."""
        path = self.path(version) / METADATA_FILE
        try:
            return ModelInfo.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as error:
            raise CorruptRegistry(f"{path} is unreadable: {error}") from None

    def _staging(self, prefix: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
