"""Build the serving kernels ahead of time: `python -m churn_mlops.core.native_build`.

Imports every kernel module with numba's JIT (CHURN_KERNELS=build, no on-disk cache), exports
each kernel Python calls with its declared signature through `numba.pycc.CC` into
`churn_mlops/_kernels*.so` beside the package's modules, and then writes the manifest
(core/native.py reads both). About 8 s on 2 cores. `make install` and the image build run it.

The target CPU: `host` (the default) compiles for this machine's instruction set, which
`make install` uses since the kernels run where they are built; an image that may run on
another machine names a baseline (the Dockerfile: `haswell`, AVX2). Measured on an AMD EPYC
(znver4) for `_predict_many` over 10,000 rows, median of 5 (the numba JIT: 0.91 ms): host
0.86 ms, skylake-avx512 0.87 ms, haswell 1.27 ms, x86-64-v3 1.67 ms, generic x86-64 2.57 ms
(SSE2 only: the compare-and-select loops lose their vectorisation). The manifest lists the
CPU flags the target needs; a worker on a CPU without them uses the JIT.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from churn_mlops.core import native

# What each named target may use, as /proc/cpuinfo spells it; "host" records this CPU's flags.
_TARGET_FLAGS: dict[str, tuple[str, ...]] = {
    "generic": (),
    "x86-64": (),
    "x86-64-v2": ("cx16", "popcnt", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "haswell": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "popcnt"),
    "skylake-avx512": ("avx2", "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
_ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "bmi", "f16c", "movbe", "popcnt", "abm")


def _required_flags(cpu: str) -> list[str]:
    if cpu == "host":
        return sorted(flag for flag in native._cpu_flags() if flag.startswith(_ISA_PREFIXES))
    if cpu not in _TARGET_FLAGS:
        raise SystemExit(f"unknown --cpu {cpu!r}: one of host, {', '.join(_TARGET_FLAGS)}")
    return list(_TARGET_FLAGS[cpu])


@contextlib.contextmanager
def _pycc_flags() -> Iterator[None]:
    """pycc compiles with numba's default flags; give it those of our njit (JIT_OPTIONS): the
    GIL released around the call (nogil) and numpy's error model."""
    pycc_compiler: Any = importlib.import_module("numba.pycc.compiler")
    original = pycc_compiler.Flags

    class KernelFlags(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            if not args:  # a fresh set, not a copy of one
                self.release_gil = bool(native.JIT_OPTIONS["nogil"])
                self.error_model = native.JIT_OPTIONS["error_model"]

    pycc_compiler.Flags = KernelFlags
    try:
        yield
    finally:
        pycc_compiler.Flags = original


def _argument(numba_type: Any) -> dict[str, Any]:
    from numba import types
    from numba.np import numpy_support

    if isinstance(numba_type, types.Array):
        if numba_type.layout != "C":
            raise SystemExit(f"kernel arguments must be C-contiguous arrays, not {numba_type}")
        dtype = numpy_support.as_dtype(numba_type.dtype).str
        return {"dtype": dtype, "ndim": numba_type.ndim}
    return {"scalar": str(numba_type)}


def _modules() -> dict[str, Any]:
    modules = {name: importlib.import_module(name) for name in native.KERNEL_MODULES}
    undeclared = {kernel.module for kernel in native.declared_kernels()} - set(modules)
    if undeclared:
        raise SystemExit(f"kernels declared outside KERNEL_MODULES: {sorted(undeclared)}")
    return modules


def _calls_into(module: Any) -> list[str]:
    """Kernel modules whose dispatchers `module`'s globals hold: what its kernels may call."""
    from numba.core.registry import CPUDispatcher

    return sorted(
        {
            value.py_func.__module__
            for value in vars(module).values()
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ != module.__name__
        }
    )


def build(output_dir: Path, cpu: str) -> dict[str, Any]:
    """Compile the extension into `output_dir` and write its manifest there."""
    numba: Any = importlib.import_module("numba")
    sigutils: Any = importlib.import_module("numba.core.sigutils")
    pycc: Any = importlib.import_module("numba.pycc")

    modules = _modules()
    compiler = pycc.CC(native.EXTENSION, source_module=native.__name__)
    compiler.target_cpu = "" if cpu == "generic" else cpu
    kernels: dict[str, list[dict[str, Any]]] = {}
    for declared in native.declared_kernels():
        if declared.signature is None:
            continue
        arguments, _ = sigutils.normalize_signature(declared.signature)
        kernels[declared.export_name] = [_argument(argument) for argument in arguments]
        compiler.export(declared.export_name, declared.signature)(declared.function)
        print(f"  {declared.module}.{declared.name}: {declared.signature}", flush=True)
    manifest_path = output_dir / native.MANIFEST_FILE
    manifest_path.unlink(missing_ok=True)  # no manifest vouches for a half-replaced extension
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="churn-kernels-") as scratch, _pycc_flags():
        compiler.output_dir = scratch
        compiler.compile()
        built = Path(scratch) / compiler.output_file
        for old in output_dir.glob(f"{native.EXTENSION}.*.so"):
            old.unlink()
        shutil.move(built, output_dir / compiler.output_file)
    seconds = time.perf_counter() - started
    manifest = {
        "format": native.MANIFEST_FORMAT,
        "numba": numba.__version__,
        "python": sys.version.split()[0],
        "cpu": cpu,
        "cpu_flags": _required_flags(cpu),
        "extension": compiler.output_file,
        "modules": {
            name: {
                "sha256": native.source_digest(native.package_dir(), name),
                "calls_into": _calls_into(module),
            }
            for name, module in modules.items()
        },
        "kernels": kernels,
    }
    partial = manifest_path.with_suffix(".partial")
    partial.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(partial, manifest_path)
    print(
        f"compiled {len(kernels)} kernels for cpu {cpu} in {seconds:.1f} s: "
        f"{output_dir / compiler.output_file}",
        flush=True,
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cpu", default="host", help="LLVM target CPU (default: host)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=native.package_dir(),
        help="where the extension and its manifest go (default: the installed package)",
    )
    options = parser.parse_args(argv)
    if any(name in sys.modules for name in native.KERNEL_MODULES):
        raise SystemExit("build in a fresh process: a kernel module is already imported")
    os.environ[native.MODE_VARIABLE] = "build"
    _required_flags(options.cpu)  # an unknown target fails before seconds of compiling
    build(options.output_dir, options.cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
