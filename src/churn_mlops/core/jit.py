"""numba's `njit`, imported without SciPy: the JIT that core/native.py falls back to.

numba imports SciPy whenever it is installed (training pulls it in with scikit-learn): once for
a version check at `import numba`, once for a BLAS probe when its CPU target loads its
registries, at the first compile or cache load. Nothing compiled here calls BLAS (the forest
and the JSON shape check walk arrays by hand), so a serving worker needs no SciPy: while numba
imports and loads those registries, a finder at the front of `sys.meta_path` answers
ImportError for SciPy, which numba handles as "not installed". Where SciPy was imported before
(a training process), this changes nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType


class _HideSciPy(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "scipy" or fullname.startswith("scipy."):
            raise ImportError(f"{fullname} is not imported by a serving worker (core/jit.py)")
        return None


def _import_numba_without_scipy() -> None:
    if "numba" in sys.modules and "numba.np.arraymath" in sys.modules:
        return
    finder = _HideSciPy()
    sys.meta_path.insert(0, finder)
    try:
        import numba  # noqa: F401 - the version check runs at import
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()  # the BLAS probe, in numba.np.arraymath
    finally:
        sys.meta_path.remove(finder)


_import_numba_without_scipy()

from numba import njit  # noqa: E402 - after the import above, by design

__all__ = ["njit"]
