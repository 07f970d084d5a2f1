"""The same service from two source trees, side by side: did a change (a refactoring, say) cost
`/predict` anything?

The baseline is another checkout's `src/` (for example a `git worktree` of an earlier commit);
both servers run `churn-mlops serve` with this environment's interpreter and dependencies, the
baseline with its `src/` first on `PYTHONPATH`. Both get the headline configuration of the
bench: an API key on every request, metrics on, the prediction log on a SQLite database of each
server's own, the cache off. `benchmarks.http_ab` loads them in turn, the first rotating.

    git worktree add /tmp/before <commit>
    python -m benchmarks tree-ab --baseline-src /tmp/before/src  [--rounds 5]
    python -m benchmarks tree-ab --baseline-src /tmp/before/src --in-process

`--in-process` measures CPU instead of RPS: each tree in a child process of its own
(`benchmarks.tree_probe`), the trees alternating, `/predict` and a one-row `/predict/batch`
called with raw ASGI, no HTTP, no load generator on the same cores.

Run it under `flock /tmp/churn-bench.lock` on a shared machine.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.constants import DISTINCT_CUSTOMERS
from benchmarks.http_ab import ab_table, run_servers_ab
from benchmarks.load import prediction_bodies
from benchmarks.servers import (
    BenchCredentials,
    ServerSpec,
    churn_service,
    provision_credentials,
)
from benchmarks.terminal import log
from churn_mlops.data import load_telco_csv

BASELINE, CURRENT = "baseline", "current"
REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TreeABOptions:
    baseline_src: Path
    model_dir: Path
    rounds: int
    duration_s: int
    warmup_s: int
    connections: tuple[int, ...]
    out: Path | None = None


def _own_database(credentials: BenchCredentials, work: Path, name: str) -> dict[str, str]:
    """The credentials' environment with a copy of their database and a spill path of `name`'s
    own, so that neither server's prediction log writes into the other's."""
    source = Path(credentials.env["CHURN_DATABASE_URL"].removeprefix("sqlite:///"))
    copy = work / f"{name}.db"
    shutil.copyfile(source, copy)
    return {
        **credentials.env,
        "CHURN_DATABASE_URL": f"sqlite:///{copy}",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(work / f"{name}-spill" / "predictions.jsonl"),
        "CHURN_DEV_API_KEY_FILE": str(work / f"{name}-dev-api-key"),
    }


def tree_paths(baseline_src: Path) -> dict[str, str]:
    """`PYTHONPATH` of each tree: its `src/` first, then the repository (for `benchmarks`)."""
    if not (baseline_src / "churn_mlops" / "cli.py").is_file():
        raise SystemExit(f"{baseline_src} is not a churn-mlops src/ folder")
    return {
        BASELINE: os.pathsep.join([str(baseline_src.resolve()), str(REPOSITORY)]),
        CURRENT: os.pathsep.join([str(REPOSITORY / "src"), str(REPOSITORY)]),
    }


def tree_specs(options: TreeABOptions, work: Path) -> dict[str, ServerSpec]:
    """Both servers: the current tree as installed, the baseline's `src/` first on the path."""
    paths = tree_paths(options.baseline_src)
    credentials = provision_credentials(work)
    specs: dict[str, ServerSpec] = {}
    for name, python_path in paths.items():
        env = {
            **_own_database(credentials, work, name),
            "PYTHONPATH": python_path,
            "CHURN_CACHE_ENABLED": "false",
        }
        # Not `credentials=`: their environment would replace this server's own database.
        spec = churn_service(options.model_dir, env=env, name=name)
        specs[name] = replace(spec, api_key=credentials.api_key)
    return specs


def run_tree_ab(options: TreeABOptions) -> list[str]:
    """Both servers under wrk in turn; the table of medians and the current/baseline ratio."""
    out = options.out or Path(tempfile.mkdtemp(prefix="bench-tree-ab-"))
    with tempfile.TemporaryDirectory() as work_name:
        runs = run_servers_ab(
            tree_specs(options, Path(work_name)),
            out / "logs",
            prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS),
            connections=options.connections,
            rounds=options.rounds,
            duration_s=options.duration_s,
            warmup_s=options.warmup_s,
        )
    lines: list[str] = []
    for count in options.connections:
        level = [run for run in runs if run.connections == count]
        lines += ["", f"### {count} connections", "", *ab_table(level, CURRENT, BASELINE)]
    return lines


IN_PROCESS_PATHS = ("/predict", "/predict/batch")


def _probe(python_path: str, model_dir: Path, path: str, requests: int, blocks: int) -> float:
    """The median CPU microseconds per request of one child's blocks."""
    counts = (str(requests), str(blocks))
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "benchmarks.tree_probe", str(model_dir), path, *counts],
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"tree probe failed:\n{completed.stderr[-2000:]}")
    return float(statistics.median(json.loads(completed.stdout.strip().splitlines()[-1])))


def run_tree_ab_in_process(options: TreeABOptions, requests: int, blocks: int) -> list[str]:
    """CPU per request of both trees, alternating (the first rotating), per path."""
    paths = tree_paths(options.baseline_src)
    timings: dict[tuple[str, str], list[float]] = {}
    for round_ in range(options.rounds):
        order = [BASELINE, CURRENT] if round_ % 2 == 0 else [CURRENT, BASELINE]
        for tree in order:
            for path in IN_PROCESS_PATHS:
                cpu = _probe(paths[tree], options.model_dir, path, requests, blocks)
                timings.setdefault((tree, path), []).append(cpu)
                log(f"round {round_ + 1} {tree:<9} {path:<15} {cpu:8.2f} us/request")
    lines = [
        "| path | baseline us/request | current us/request | current / baseline "
        "| median of the rounds' ratios |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in IN_PROCESS_PATHS:
        before, after = timings[(BASELINE, path)], timings[(CURRENT, path)]
        pairs = statistics.median(a / b for a, b in zip(after, before, strict=True))
        lines.append(
            f"| {path} | {statistics.median(before):.2f} | {statistics.median(after):.2f} "
            f"| {statistics.median(after) / statistics.median(before):.3f} | {pairs:.3f} |"
        )
    return lines
