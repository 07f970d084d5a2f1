"""Compare evaluators of the churn model: latency per call by batch size, and size on disk.

Candidates: scikit-learn's predict_proba (one OpenMP thread, and its default threads), our
numba CompiledForest, and, when installed, Treelite + TL2cgen (compiled C) and ONNX Runtime via
skl2onnx. Every candidate is checked against predict_proba first; one that cannot be built or
disagrees is reported with the reason instead of a time. Prints a markdown table.

    .venv/bin/python scripts/compare_evaluators.py       # numba and sklearn only

The other candidates go in a scratch venv, never the project's:

    python3 -m venv /tmp/cmpvenv
    /tmp/cmpvenv/bin/pip install numpy==2.4.6 scikit-learn==1.9.1 numba==0.68.1 joblib \
        pydantic threadpoolctl treelite tl2cgen onnxruntime skl2onnx onnx
    PYTHONPATH=src /tmp/cmpvenv/bin/python scripts/compare_evaluators.py

Without --model-dir it trains the default configuration in memory (what `churn-mlops train`
writes for the shipped data and seed 42).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn
from threadpoolctl import threadpool_info, threadpool_limits

from churn_mlops.data import load_telco_csv
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.compiled import CompiledForest
from churn_mlops.model.training import TrainingConfig, train_model

BATCH_SIZES = (1, 32, 1_024, 10_000)
TOLERANCE = 1e-5

Rows = npt.NDArray[np.float32]
Scorer = Callable[[Rows], Any]


@dataclass
class Candidate:
    name: str
    scorer: Scorer | None
    size_bytes: int | None = None
    size_note: str = ""
    problem: str = ""
    timings_us: dict[int, float] = field(default_factory=dict)
    gap: float | None = None
    # OpenMP threads to limit the process to while this candidate runs; None leaves them.
    openmp_threads: int | None = None


def _optional(module: str) -> Any | None:
    return importlib.import_module(module) if importlib.util.find_spec(module) else None


def _describe(error: BaseException) -> str:
    """The innermost cause of a failure, on one line (converters dump whole models)."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message[:200]}"


def _median_call_us(scorer: Scorer, rows: Rows, repeats: int, budget_s: float) -> float:
    """Median over `repeats` of the mean time of one call, each repeat lasting ~budget_s."""
    for _ in range(3):
        scorer(rows)
    start = time.perf_counter()
    scorer(rows)
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(budget_s / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            scorer(rows)
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples) * 1e6


def _sklearn_candidates(estimator: Any, artifact: ModelArtifact) -> list[Candidate]:
    def proba(rows: Rows) -> Any:
        return estimator.predict_proba(rows)[:, 1]

    threads = max(
        (info["num_threads"] for info in threadpool_info() if info["user_api"] == "openmp"),
        default=1,
    )
    size = len(artifact.model_bytes)
    return [
        Candidate(
            "scikit-learn predict_proba, 1 OpenMP thread",
            proba,
            size,
            "model.joblib",
            openmp_threads=1,
        ),
        Candidate(
            f"scikit-learn predict_proba, default ({threads}) threads", proba, size, "model.joblib"
        ),
    ]


def _numba_candidates(artifact: ModelArtifact) -> list[Candidate]:
    forest = CompiledForest.from_bytes(artifact.forest_bytes)
    size = len(artifact.forest_bytes)

    def one_row(rows: Rows) -> Any:
        return forest.predict_one(rows[0]) if len(rows) == 1 else None

    return [
        Candidate("numba CompiledForest.predict (batch entry)", forest.predict, size, "forest.npz"),
        Candidate("numba CompiledForest.predict_one (one-row entry)", one_row, size, "forest.npz"),
    ]


def _treelite_candidate(estimator: Any, workdir: Path) -> Candidate:
    name = "Treelite + TL2cgen compiled C, 1 thread"
    treelite, tl2cgen = _optional("treelite"), _optional("tl2cgen")
    if treelite is None or tl2cgen is None:
        return Candidate(name, None, problem="treelite/tl2cgen not installed")
    try:
        model = treelite.sklearn.import_model(estimator)
        library = workdir / "model.so"
        tl2cgen.export_lib(
            model, toolchain="gcc", libpath=str(library), params={}, options=["-march=native"]
        )
        predictor = tl2cgen.Predictor(str(library), nthread=1)
    except Exception as error:  # any failure is a finding to report, not a crash
        return Candidate(name, None, problem=_describe(error))

    def score(rows: Rows) -> Any:
        return np.asarray(predictor.predict(tl2cgen.DMatrix(rows))).reshape(len(rows), -1)[:, -1]

    return Candidate(name, score, library.stat().st_size, "model.so")


def _onnx_candidate(estimator: Any, n_features: int) -> Candidate:
    name = "ONNX Runtime via skl2onnx, 1 thread"
    skl2onnx, ort = _optional("skl2onnx"), _optional("onnxruntime")
    if skl2onnx is None or ort is None:
        return Candidate(name, None, problem="skl2onnx/onnxruntime not installed")
    try:
        data_types = importlib.import_module("skl2onnx.common.data_types")
        onnx_model = skl2onnx.convert_sklearn(
            estimator,
            initial_types=[("input", data_types.FloatTensorType([None, n_features]))],
            options={id(estimator): {"zipmap": False}},
        )
        payload = onnx_model.SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # any failure is a finding to report, not a crash
        return Candidate(name, None, problem=_describe(error))
    output = session.get_outputs()[1].name

    def score(rows: Rows) -> Any:
        return session.run([output], {"input": rows})[0][:, 1]

    return Candidate(name, score, len(payload), "model.onnx")


def _measure(
    candidate: Candidate,
    batches: dict[int, Rows],
    expected: dict[int, Any],
    repeats: int,
    budget: float,
) -> None:
    """Check the candidate against predict_proba, then time it on every batch it takes."""
    if candidate.scorer is None:
        return
    if candidate.openmp_threads is None:
        _check_and_time(candidate, candidate.scorer, batches, expected, repeats, budget)
        return
    with threadpool_limits(limits=candidate.openmp_threads, user_api="openmp"):
        _check_and_time(candidate, candidate.scorer, batches, expected, repeats, budget)


def _check_and_time(
    candidate: Candidate,
    scorer: Scorer,
    batches: dict[int, Rows],
    expected: dict[int, Any],
    repeats: int,
    budget: float,
) -> None:
    results = {n: scorer(rows) for n, rows in batches.items()}
    taken = [n for n, result in results.items() if result is not None]
    candidate.gap = max(
        float(np.max(np.abs(np.asarray(results[n], dtype=np.float64) - expected[n]))) for n in taken
    )
    if candidate.gap > TOLERANCE:
        candidate.problem = f"disagrees with predict_proba by {candidate.gap:.3g}"
        return
    for n in taken:
        candidate.timings_us[n] = _median_call_us(scorer, batches[n], repeats, budget)


def _table(candidates: list[Candidate]) -> str:
    head = "| evaluator | " + " | ".join(f"{n:,} row{'s' * (n > 1)}" for n in BATCH_SIZES)
    head += " | rows/s at 10,000 | max abs diff vs sklearn | size on disk |"
    lines = [head, "|---" * (len(BATCH_SIZES) + 4) + "|"]
    for c in candidates:
        size = f"{c.size_bytes:,} B ({c.size_note})" if c.size_bytes else "-"
        if c.problem:
            cells = ["-"] * len(BATCH_SIZES) + ["-", c.problem]
        else:
            cells = [
                f"{c.timings_us[n]:,.1f} us" if n in c.timings_us else "-" for n in BATCH_SIZES
            ]
            last = c.timings_us.get(BATCH_SIZES[-1])
            cells.append(f"{BATCH_SIZES[-1] / last * 1e6:,.0f}" if last else "-")
            cells.append(f"{c.gap:.1e}" if c.gap is not None else "-")
        lines.append(f"| {c.name} | " + " | ".join(cells) + f" | {size} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="an artifact; default: train one")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per cell")
    parser.add_argument("--budget", type=float, default=0.05, help="seconds per repeat")
    args = parser.parse_args()

    dataset = load_telco_csv()
    if args.model_dir:
        artifact = ModelArtifact.load(args.model_dir)
    else:
        artifact = train_model(dataset, TrainingConfig()).artifact
    estimator = artifact.estimator
    encoded = artifact.encoder.encode_columns(dataset.columns)
    rng = np.random.default_rng(0)
    batches = {
        n: np.ascontiguousarray(encoded[rng.integers(0, len(encoded), n)]) for n in BATCH_SIZES
    }
    expected = {n: estimator.predict_proba(rows)[:, 1] for n, rows in batches.items()}

    with tempfile.TemporaryDirectory() as scratch:
        candidates = [
            *_sklearn_candidates(estimator, artifact),
            *_numba_candidates(artifact),
            _treelite_candidate(estimator, Path(scratch)),
            _onnx_candidate(estimator, encoded.shape[1]),
        ]
        for candidate in candidates:
            _measure(candidate, batches, expected, args.repeats, args.budget)

    hyper = artifact.info.hyperparameters
    print(
        f"Model {artifact.version}: {hyper.get('n_trees')} trees, max_depth "
        f"{hyper.get('max_depth')}, max_leaf_nodes {hyper.get('max_leaf_nodes')}; "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}"
    )
    print(f"Median over {args.repeats} repeats of ~{args.budget}s each; time per call.\n")
    print(_table(candidates))


if __name__ == "__main__":
    main()
