"""`python -m tests.unit.native.jit_reference CALLS RESULTS`: replay recorded kernel calls on
numba's JIT (run with CHURN_KERNELS=jit) and save what each gave."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.unit.native.calls import exported, load, replay, save


def main(source: Path, target: Path) -> None:
    assert os.environ.get("CHURN_KERNELS") == "jit"
    kernels = exported()
    results = []
    for name, args in load(source):
        dispatcher = getattr(sys.modules[kernels[name].module], kernels[name].name)
        assert hasattr(dispatcher, "signatures"), f"{name} is not numba's dispatcher"
        results.append((name, replay(dispatcher, args)))
    save(target, results)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
