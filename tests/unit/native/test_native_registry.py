"""How a kernel module picks its kernels (core/native.py): the extension's when it is built
from the module's current source, numba's JIT with a warning when the source changed since,
and a refused call where the arguments are not the declared types."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from churn_mlops.core import native
from churn_mlops.model import forest_kernels
from churn_mlops.security import limits
from tests.fixtures.kernels import require_compiled_kernels

SRC = Path(__file__).resolve().parents[3] / "src"

SHOW_KERNEL_TYPES = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from churn_mlops.model import drift_profile, forest_kernels, treeshap
print(forest_kernels.__file__)
for kernel in (forest_kernels._predict_one, treeshap._explain_many, drift_profile._add_bin_counts):
    print(type(kernel).__name__)
print("numba" in sys.modules)
"""


def test_every_numba_kernel_is_declared_in_a_kernel_module() -> None:
    package = SRC / "churn_mlops"
    declaring = set()
    for path in package.rglob("*.py"):
        text = path.read_text()
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if module.startswith(("churn_mlops.core.native", "churn_mlops.core.jit")):
            continue
        assert not re.search(r"\bnjit\(|^\s*(import|from) numba\b", text, re.MULTILINE), module
        if "@kernel(" in text:
            declaring.add(module)
    assert declaring == set(native.KERNEL_MODULES)


def test_a_call_with_other_types_than_declared_is_refused() -> None:
    require_compiled_kernels()
    body = np.frombuffer(b'{"a": [1]}', np.uint8)
    assert limits._measure(body, 32) == (2, 5, 1, 1)  # { : [ ] }
    with pytest.raises(TypeError, match="argument 0: expected a C-contiguous uint8 array"):
        limits._measure(body.view(np.int8), 32)  # the same itemsize: the extension would take it
    with pytest.raises(TypeError, match="strided"):
        limits._measure(body[::2], 32)
    with pytest.raises(TypeError, match="argument 1: expected int64, got float"):
        limits._measure(body, 32.5)
    with pytest.raises(TypeError, match="of 2 dimensions, got float32 of 1"):
        forest_kernels._predict_many(np.zeros(3, np.float32), *([None] * 15))


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package, its extension and manifest included, to change sources in."""
    shutil.copytree(
        SRC / "churn_mlops",
        tmp_path / "churn_mlops",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def _run(package_root: Path, code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    env.pop("CHURN_KERNELS", None)
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=package_root,
        env=env,
    )


@pytest.mark.timeout(120)
def test_a_changed_kernel_module_uses_the_jit_and_says_how_to_rebuild(package_copy: Path) -> None:
    require_compiled_kernels()
    source = package_copy / "churn_mlops" / "model" / "forest_kernels.py"
    source.write_text(source.read_text() + "\n# changed after the build\n")

    result = _run(package_copy, SHOW_KERNEL_TYPES)

    assert result.returncode == 0, result.stderr
    path, forest, explainer, drift, numba_imported = result.stdout.split()
    assert path.startswith(str(package_copy))
    # treeshap's kernels call forest_kernels': stale with it. drift_profile's stay compiled.
    assert (forest, explainer, drift, numba_imported) == (
        "CPUDispatcher",
        "CPUDispatcher",
        "builtin_function_or_method",
        "True",
    )
    [warning] = [line for line in result.stderr.splitlines() if "out of date" in line]
    assert "churn_mlops.model.forest_kernels, churn_mlops.model.treeshap:" in warning
    assert native.REBUILD_COMMAND in warning


@pytest.mark.timeout(120)
def test_an_unchanged_copy_serves_from_the_extension_without_numba(package_copy: Path) -> None:
    require_compiled_kernels()

    result = _run(package_copy, SHOW_KERNEL_TYPES)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["builtin_function_or_method"] * 3 + ["False"]
    assert "out of date" not in result.stderr


@pytest.mark.timeout(120)
def test_aot_mode_refuses_to_import_without_the_extension(package_copy: Path) -> None:
    (package_copy / "churn_mlops" / native.MANIFEST_FILE).unlink(missing_ok=True)

    result = _run(package_copy, "import churn_mlops.model.forest_kernels", CHURN_KERNELS="aot")

    assert result.returncode != 0
    assert "CHURN_KERNELS=aot" in result.stderr
    assert native.REBUILD_COMMAND in result.stderr
