"""Kernel calls recorded from the public functions, saved without pickle, and replayed.

`record_kernel_calls` runs the code that serves (CompiledForest, TreeExplainer, the drift
counter, the V2 BYTES decoder, the JSON shape check) on random rows and edge cases while every
exported kernel is wrapped to keep a copy of its arguments; `replay` calls a kernel on fresh
copies and returns what it gave: its return values, then its arguments after the call (the
kernels write their results into arrays they are given).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from churn_mlops.core import native

Call = tuple[str, list[Any]]
"""(export name, arguments)."""


def exported() -> dict[str, native.Kernel]:
    """Every kernel the build exports, by its name in the extension (imports the modules)."""
    for module in native.KERNEL_MODULES:
        import_module(module)
    return {k.export_name: k for k in native.declared_kernels() if k.signature is not None}


def _copy(values: list[Any]) -> list[Any]:
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in values]


@contextmanager
def recording() -> Iterator[list[Call]]:
    """Within: every call of an exported kernel through its module is appended, arguments
    copied before the call."""
    calls: list[Call] = []
    originals: list[tuple[Any, str, Any]] = []
    for export_name, declared in exported().items():
        module = import_module(declared.module)
        original = getattr(module, declared.name)

        def recorder(*args: Any, _name: str = export_name, _call: Any = original) -> Any:
            calls.append((_name, _copy(list(args))))
            return _call(*args)

        originals.append((module, declared.name, original))
        setattr(module, declared.name, recorder)
    try:
        yield calls
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def replay(kernel: Callable[..., Any], args: list[Any]) -> list[Any]:
    """What `kernel` gives for fresh copies of `args`: return values, then the arguments."""
    given = _copy(args)
    result = kernel(*given)
    returned = list(result) if isinstance(result, tuple) else ([] if result is None else [result])
    return returned + given


def save(path: Path, entries: list[Call]) -> None:
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    index: list[dict[str, Any]] = []
    for number, (name, values) in enumerate(entries):
        described: list[Any] = []
        for position, value in enumerate(values):
            if isinstance(value, np.ndarray):
                key = f"c{number}_{position}"
                arrays[key] = value
                described.append({"array": key})
            elif isinstance(value, int | np.integer):
                described.append({"int": int(value)})
            else:
                described.append({"float": float(value)})
        index.append({"name": name, "values": described})
    np.savez(path.with_suffix(".npz"), **arrays)
    path.with_suffix(".json").write_text(json.dumps(index))


def load(path: Path) -> list[Call]:
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    entries: list[Call] = []
    for item in json.loads(path.with_suffix(".json").read_text()):
        values = [
            arrays[v["array"]] if "array" in v else v.get("int", v.get("float"))
            for v in item["values"]
        ]
        entries.append((item["name"], values))
    return entries
