"""The same service from two source trees, side by side: did a change (a refactoring, say) cost
`/predict` anything?

The baseline is another checkout's `src/` (for example a `git worktree` of an earlier commit);
both servers run `churn-mlops serve` with this environment's interpreter and dependencies, the
baseline with its `src/` first on `PYTHONPATH`. Both get the headline configuration of the
bench: an API key on every request, metrics on, the prediction log on a SQLite database of each
server's own, the cache off. `benchmarks.http_ab` loads them in turn, the first rotating.

    git worktree add /tmp/before <commit>
    python -m benchmarks tree-ab --baseline-src /tmp/before/src  [--rounds 5]

Run it under `flock /tmp/churn-bench.lock` on a shared machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.constants import DISTINCT_CUSTOMERS
from benchmarks.http_ab import ab_table, run_ab
from benchmarks.load import Wrk, prediction_bodies, write_bodies
from benchmarks.servers import (
    BenchCredentials,
    ServerSpec,
    churn_service,
    provision_credentials,
    start_server,
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


def tree_specs(options: TreeABOptions, work: Path) -> dict[str, ServerSpec]:
    """Both servers: the current tree as installed, the baseline's `src/` first on the path."""
    if not (options.baseline_src / "churn_mlops" / "cli.py").is_file():
        raise SystemExit(f"{options.baseline_src} is not a churn-mlops src/ folder")
    credentials = provision_credentials(work)
    paths = {
        BASELINE: os.pathsep.join([str(options.baseline_src.resolve()), str(REPOSITORY)]),
        CURRENT: os.pathsep.join([str(REPOSITORY / "src"), str(REPOSITORY)]),
    }
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
    with tempfile.TemporaryDirectory() as work_name, ExitStack() as stack:
        work = Path(work_name)
        specs = tree_specs(options, work)
        wrk = Wrk(work)
        bodies = write_bodies(
            work / "bodies.jsonl", prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
        )
        servers = {
            name: stack.enter_context(start_server(spec, out / "logs"))
            for name, spec in specs.items()
        }
        lines: list[str] = []
        for count in options.connections:
            runs = run_ab(
                wrk,
                servers,
                bodies,
                connections=[count],
                rounds=options.rounds,
                duration_s=options.duration_s,
                warmup_s=options.warmup_s,
                log=log,
            )
            lines += ["", f"### {count} connections", "", *ab_table(runs, CURRENT, BASELINE)]
    return lines
