"""The serving kernels, compiled ahead of time into one CPython extension, numba's JIT otherwise.

`import numba` alone costs a worker about 100 MiB of RSS (llvmlite's LLVM, mapped and touched),
most of what kept a serving worker at 250 MiB (docs/capacity.md, "Memory"). So every numba
kernel of the serving path is declared with `@kernel(signature)` and compiled at install by
`python -m churn_mlops.core.native_build` (numba's `pycc`) into `churn_mlops/_kernels*.so`,
a plain extension module that imports neither numba nor llvmlite. Its manifest, written beside
it, records the sha256 of every kernel module's source, what each module's kernels call into,
numba's version and the target CPU.

At import of a kernel module its decorators ask once per process whether the extension is
usable: it exists, imports, was built for this CPU's instruction set, and the module's source,
and that of every kernel module it calls into, hashes as recorded. If so, a kernel Python calls
is the extension's function, and a helper only kernels call (`@kernel()`) stays the plain
Python function (the extension has it compiled into its callers). If not, every kernel is
numba's njit dispatcher as before (on-disk cache where writable), numba is imported only then
(core/jit.py), and an extension that exists but is out of date logs one warning naming the
modules and the command that rebuilds it. `CHURN_KERNELS=jit` forces the JIT (the build uses
it); `CHURN_KERNELS=aot` refuses to import without a usable extension.

An extension function checks only the itemsize of an array argument, not its dtype, number of
dimensions or layout: call sites pass exactly the declared types (they build or coerce their
arrays with those). Under pytest, or with CHURN_KERNEL_CHECKS=1, each call is checked against
the signature first and a mismatch raises TypeError; the check costs about 1.2 us per
`_predict_one` call (14 arguments, 2.8 us without), so production skips it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

logger = logging.getLogger(__name__)

KERNEL_MODULES: tuple[str, ...] = (
    "churn_mlops.model.forest_kernels",
    "churn_mlops.model.treeshap_plan",
    "churn_mlops.model.treeshap",
    "churn_mlops.model.drift_profile",
    "churn_mlops.api.v2.kernels",
    "churn_mlops.security.limits",
)
"""Every module that declares kernels; the build imports them and the manifest hashes them."""

PACKAGE = "churn_mlops"
EXTENSION = "_kernels"
MANIFEST_FILE = "_kernels.json"
MANIFEST_FORMAT = 1
MODE_VARIABLE = "CHURN_KERNELS"
CHECKS_VARIABLE = "CHURN_KERNEL_CHECKS"
REBUILD_COMMAND = "python -m churn_mlops.core.native_build"

# No parallel=True anywhere: numba never starts its thread pool, so a worker keeps the threads
# it had. error_model "numpy": a division by zero gives inf or NaN, as numpy does, with no
# exception check in the loops. The build compiles the extension with the same options.
JIT_OPTIONS: Mapping[str, Any] = {
    "nogil": True,
    "fastmath": False,
    "parallel": False,
    "error_model": "numpy",
}

Function = TypeVar("Function", bound=Callable[..., Any])


@dataclass(frozen=True)
class Kernel:
    """A function declared with `@kernel`: where it is defined, and its exported signature
    (numba's notation, e.g. "f8(f4[::1], i8)"), or None for a helper only kernels call."""

    module: str
    name: str
    signature: str | None
    function: Callable[..., Any]

    @property
    def export_name(self) -> str:
        """Its name in the extension: one namespace for all modules."""
        return f"{self.module.rsplit('.', 1)[-1]}__{self.name.lstrip('_')}"


_DECLARED: dict[tuple[str, str], Kernel] = {}


def declared_kernels() -> list[Kernel]:
    """Every kernel declared so far by the kernel modules imported in this process."""
    return list(_DECLARED.values())


def kernel(signature: str | None = None) -> Callable[[Function], Function]:
    """Declare a kernel: `signature` for one Python calls (exported by the build), none for a
    helper only other kernels call."""

    def declare(function: Function) -> Function:
        declared = Kernel(function.__module__, function.__name__, signature, function)
        _DECLARED[(declared.module, declared.name)] = declared
        extension = usable_extension(declared.module)
        if extension is None:
            return _jit(function)  # type: ignore[no-any-return]
        if signature is None:
            return function
        compiled = getattr(extension.module, declared.export_name)
        if _checks_enabled():
            return _checked(declared, compiled, extension.arguments[declared.export_name])  # type: ignore[return-value]
        return compiled  # type: ignore[no-any-return]

    return declare


def _jit(function: Callable[..., Any]) -> Any:
    """numba's njit with its on-disk cache where it can write one, plain njit where it cannot
    (numba raises at decoration when no cache directory is writable: a read-only container with
    no home). The build compiles without the cache: what it links is compiled afresh."""
    from churn_mlops.core.jit import njit

    if os.environ.get(MODE_VARIABLE) == "build":
        return njit(cache=False, **JIT_OPTIONS)(function)
    try:
        return njit(cache=True, **JIT_OPTIONS)(function)
    except RuntimeError:
        return njit(cache=False, **JIT_OPTIONS)(function)


# --------------------------------------------------------------------------- the extension


@dataclass(frozen=True)
class Extension:
    """The imported extension, the modules it was built from and, per exported kernel, its
    arguments as the manifest has them ({"dtype": "<f4", "ndim": 2} for a C-contiguous array,
    {"scalar": "int64"})."""

    module: ModuleType
    modules: frozenset[str]
    arguments: Mapping[str, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Verdict:
    """Whether the extension may serve: the extension (None if not), the modules whose source
    changed since the build, and why it may not serve."""

    extension: Extension | None
    stale_modules: frozenset[str]
    reason: str


def package_dir() -> Path:
    return Path(__file__).resolve().parents[1]


def usable_extension(module: str) -> Extension | None:
    """The extension if `module`'s kernels may come from it, else None (then numba's JIT)."""
    verdict = _verdict()
    extension = verdict.extension
    if extension is None or module in verdict.stale_modules or module not in extension.modules:
        return None
    return extension


@functools.cache
def _verdict() -> Verdict:
    mode = os.environ.get(MODE_VARIABLE, "auto")
    if mode in ("jit", "build"):
        return Verdict(None, frozenset(), f"{MODE_VARIABLE}={mode}")
    verdict = inspect_extension(package_dir())
    if verdict.stale_modules:
        logger.warning(
            "the compiled kernels are out of date for %s: these modules use numba's JIT "
            "(about 100 MiB more per worker) until `%s` rebuilds them",
            ", ".join(sorted(verdict.stale_modules)),
            REBUILD_COMMAND,
        )
    elif verdict.extension is None:
        logger.info("numba's JIT compiles the kernels: %s", verdict.reason)
    if mode == "aot" and (verdict.extension is None or verdict.stale_modules):
        raise ImportError(
            f"{MODE_VARIABLE}=aot and the compiled kernels are not usable ({verdict.reason}); "
            f"build them with `{REBUILD_COMMAND}`"
        )
    return verdict


def inspect_extension(directory: Path) -> Verdict:
    """Read the manifest in `directory` (a package directory holding the kernel modules) and
    import the extension beside it if the manifest allows."""
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        return Verdict(None, frozenset(), f"no {MANIFEST_FILE}: the kernels were never built")
    except ValueError as error:
        return Verdict(None, frozenset(), f"unreadable {MANIFEST_FILE}: {error}")
    if manifest.get("format") != MANIFEST_FORMAT:
        return Verdict(None, frozenset(KERNEL_MODULES), "a manifest of another format")
    missing = sorted(set(manifest.get("cpu_flags", ())) - _cpu_flags())
    if missing and _cpu_flags():
        return Verdict(None, frozenset(), f"built for a CPU with {', '.join(missing)}")
    stale = _stale_modules(directory, manifest)
    try:
        module = importlib.import_module(f"{PACKAGE}.{EXTENSION}")
    except ImportError as error:
        return Verdict(None, frozenset(KERNEL_MODULES), f"the extension does not import: {error}")
    extension = Extension(module, frozenset(manifest["modules"]), manifest["kernels"])
    reason = f"out of date: {', '.join(sorted(stale))}" if stale else "built and up to date"
    return Verdict(extension, frozenset(stale), reason)


def source_digest(directory: Path, module: str) -> str:
    """sha256 of a kernel module's source file under the package directory `directory`."""
    relative = Path(*module.split(".")[1:]).with_suffix(".py")
    return hashlib.sha256((directory / relative).read_bytes()).hexdigest()


def _stale_modules(directory: Path, manifest: Mapping[str, Any]) -> set[str]:
    """Modules whose source, or the source of a module their kernels call into, changed."""
    recorded: Mapping[str, Mapping[str, Any]] = manifest.get("modules", {})
    changed = set(KERNEL_MODULES) - set(recorded)
    for name, entry in recorded.items():
        try:
            if source_digest(directory, name) != entry.get("sha256"):
                changed.add(name)
        except OSError:
            changed.add(name)
    stale = set(changed)
    for name, entry in recorded.items():
        if changed & set(entry.get("calls_into", ())):
            stale.add(name)
    return stale


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """This CPU's instruction-set flags (Linux); empty where unknown, and then not checked."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


# --------------------------------------------------------------------------- checked calls


def _checks_enabled() -> bool:
    setting = os.environ.get(CHECKS_VARIABLE)
    if setting is not None:
        return setting == "1"
    return "pytest" in sys.modules


def argument_problem(value: Any, expected: Mapping[str, Any]) -> str | None:
    """Why `value` does not fit an argument as the manifest describes it, or None."""
    if "scalar" in expected:
        kind = expected["scalar"]
        if kind.startswith(("int", "uint")):
            fits = isinstance(value, int | np.integer) and not isinstance(value, bool)
        else:
            fits = isinstance(value, float | int | np.floating | np.integer)
        return None if fits else f"expected {kind}, got {type(value).__name__}"
    if not isinstance(value, np.ndarray):
        return f"expected an array, got {type(value).__name__}"
    dtype, ndim = np.dtype(expected["dtype"]), expected["ndim"]
    if value.dtype != dtype or value.ndim != ndim or not value.flags.c_contiguous:
        layout = "C" if value.flags.c_contiguous else "strided"
        return (
            f"expected a C-contiguous {dtype} array of {ndim} dimensions, got "
            f"{value.dtype} of {value.ndim} ({layout})"
        )
    return None


def _checked(
    declared: Kernel, compiled: Callable[..., Any], arguments: Sequence[Mapping[str, Any]]
) -> Callable[..., Any]:
    def call(*values: Any) -> Any:
        if len(values) != len(arguments):
            raise TypeError(f"{declared.name} takes {len(arguments)} arguments")
        for position, (value, expected) in enumerate(zip(values, arguments, strict=True)):
            problem = argument_problem(value, expected)
            if problem is not None:
                raise TypeError(
                    f"{declared.module}.{declared.name}, argument {position}: {problem}"
                )
        return compiled(*values)

    call.__name__ = declared.name
    # As numba's dispatcher has it: tests run a kernel's Python source (test_limits_linear).
    setattr(call, "py_func", declared.function)  # noqa: B010
    return call
