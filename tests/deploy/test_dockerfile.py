"""deploy/docker/Dockerfile and the root .dockerignore, checked without a Docker engine."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, REPO
from tests.deploy.service_facts import unknown_env_names

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
HADOLINT_CONFIG = DEPLOY / "docker" / ".hadolint.yaml"
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"

# Imports the image's entry points with every module outside requirements/runtime.lock refused.
_IMPORT_WITH_RUNTIME_LOCK_ONLY = """
import importlib.abc, sys
refused = set(sys.argv[1].split(","))
class RuntimeLockOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in refused:
            raise ModuleNotFoundError(f"{name} is not installed from requirements/runtime.lock")
        return None
sys.meta_path.insert(0, RuntimeLockOnly())
import churn_mlops.cli, churn_mlops.api.app, churn_mlops.model.training
"""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def stages(text: str) -> dict[str, list[Instruction]]:
    """Instructions by stage name (the `AS` of each FROM); the final stage is the image."""
    named: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            current = [instruction]
            words = instruction.arguments.split()
            named[words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else "?"] = current
        elif named:
            current.append(instruction)
    return named


def env(stage: list[Instruction]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                variables[key] = value
    return variables


def one(stage: list[Instruction], keyword: str) -> Instruction:
    [found] = [instruction for instruction in stage if instruction.keyword == keyword]
    return found


def dockerignore_keeps(path: str) -> bool:
    """Whether the build context keeps `path`: the last .dockerignore pattern matching it or one
    of its parent directories decides, as in Docker's pattern matcher."""
    kept = True
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            kept = negated
    return kept


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[Instruction]]:
    return stages(DOCKERFILE.read_text())


@pytest.mark.timeout(60)
def test_hadolint_reports_nothing() -> None:
    config = ["--config", str(HADOLINT_CONFIG)] if HADOLINT_CONFIG.exists() else []
    result = subprocess.run(
        [str(HADOLINT), "--no-color", *config, str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_build_is_multi_stage_on_a_slim_python(dockerfile: dict[str, list[Instruction]]) -> None:
    assert list(dockerfile) == ["build", "model-artifact", "model", "runtime"]
    arguments = {
        i.arguments.partition("=")[0]: i.arguments.partition("=")[2]
        for i in instructions(DOCKERFILE.read_text())
        if i.keyword == "ARG" and "=" in i.arguments
    }
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", arguments["PYTHON_IMAGE"])
    assert one(dockerfile["runtime"], "FROM").arguments == "${PYTHON_IMAGE} AS runtime"


def test_image_python_is_the_locked_python() -> None:
    header = RUNTIME_LOCK.read_text().splitlines()[1]
    assert "--python-version 3.11" in header


def test_image_runs_as_a_numeric_non_root_user(dockerfile: dict[str, list[Instruction]]) -> None:
    # runAsNonRoot can only verify a numeric uid.
    uid, _, gid = one(dockerfile["runtime"], "USER").arguments.partition(":")
    assert uid.isdigit(), uid
    assert gid.isdigit(), gid
    assert int(uid) > 0


def test_image_runs_one_server_process(dockerfile: dict[str, list[Instruction]]) -> None:
    runtime = dockerfile["runtime"]
    assert json.loads(one(runtime, "CMD").arguments) == ["churn-mlops", "serve"]
    variables = env(runtime)
    assert variables["CHURN_WORKERS"] == "1"
    assert variables["CHURN_HOST"] == "0.0.0.0"  # noqa: S104 - the container's interface
    assert one(runtime, "EXPOSE").arguments == variables["CHURN_PORT"]


def test_image_serves_the_model_built_into_it(dockerfile: dict[str, list[Instruction]]) -> None:
    copies = [i.arguments for i in dockerfile["runtime"] if i.keyword == "COPY"]
    assert f"--from=model /model {env(dockerfile['runtime'])['CHURN_MODEL_DIR']}" in copies
    [build_step] = [i.arguments for i in dockerfile["model"] if i.keyword == "RUN"]
    assert "churn-mlops train --out /model" in build_step
    assert "ModelArtifact.load(Path('/model'))" in build_step


def test_image_caches_numba_kernels_on_a_writable_path(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    assert env(dockerfile["runtime"])["NUMBA_CACHE_DIR"].startswith("/tmp/")  # noqa: S108


def test_image_healthcheck_asks_the_readiness_endpoint(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    healthcheck = one(dockerfile["runtime"], "HEALTHCHECK").arguments
    assert "/health/ready" in healthcheck
    assert "--start-period=" in healthcheck


def test_image_environment_names_are_real_settings(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    names = {name for name in env(dockerfile["runtime"]) if name.startswith("CHURN_")}
    assert unknown_env_names(names) == []


def test_dockerignore_keeps_what_the_build_copies_and_nothing_private(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    sources = [
        source
        for stage in dockerfile.values()
        for i in stage
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for source in i.arguments.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert dockerignore_keeps(source), f"the build copies {source} but .dockerignore drops it"
    package_files = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "src").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert all(map(dockerignore_keeps, package_files))
    for private in (".env", ".git/config", ".venv/bin/python", "var/model/model.joblib"):
        assert not dockerignore_keeps(private), private
    assert not dockerignore_keeps("src/churn_mlops/__pycache__/cli.cpython-311.pyc")
    # The benchmark harness is not part of the product: neither in the context nor in the image.
    assert not dockerignore_keeps("benchmarks/cli.py")


@pytest.mark.timeout(60)
def test_entry_points_import_with_the_runtime_lock_only() -> None:
    """The image installs requirements/runtime.lock: `churn-mlops train` and `serve` must not
    need a development or benchmark dependency at import, nor the benchmark harness itself."""

    def normalise(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {
        normalise(line.partition("==")[0])
        for line in RUNTIME_LOCK.read_text().splitlines()
        if "==" in line and not line.startswith(" ")
    } | {"churn-mlops"}
    refused = sorted(
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if not any(normalise(d) in locked for d in distributions)
    )
    assert "pandas" in refused
    assert "numba" not in refused
    refused.append("benchmarks")  # a package of the repository, not of any distribution
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITH_RUNTIME_LOCK_ONLY, ",".join(refused)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
