"""The auth suite: what authentication costs `POST /predict`.

Two copies of the service, identical but for `CHURN_AUTH_ENABLED`: with authentication (an API
key verified once, then served from the worker's cache; the per-principal token bucket checked
on every request, with limits no load reaches) and without. Both have their prediction cache and
prediction log off and the same database, so the difference is the authentication path alone.
They are measured by `benchmarks.http_ab`: in each round both back to back at each connection
level, the one going first alternating; the report gives per-round figures, medians and the
ratio of the medians. Then the guard and the whole app in process (`benchmarks.auth_inprocess`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.auth_inprocess import app_cost_us, guard_cost_us
from benchmarks.auth_report import render
from benchmarks.constants import COMMAND, DISTINCT_CUSTOMERS, WORK_DIR_PREFIX, WORKERS
from benchmarks.http_ab import ABRun, run_ab
from benchmarks.load import Wrk, prediction_bodies, write_bodies
from benchmarks.servers import (
    BenchCredentials,
    RunningServer,
    ServerSpec,
    churn_service,
    provision_credentials,
    start_server,
)
from benchmarks.terminal import log
from churn_mlops.data import load_telco_csv

SERVERS = ("auth-on", "auth-off")
# Both servers: the model path only (no prediction cache), nothing written per prediction.
COMMON_ENV = {"CHURN_CACHE_ENABLED": "false", "CHURN_PREDICTION_LOG_ENABLED": "false"}


@dataclass(frozen=True)
class AuthBenchOptions:
    model_dir: Path
    model_version: str
    out_dir: Path
    connections: Sequence[int]
    duration_s: int
    warmup_s: int
    rounds: int

    @property
    def command(self) -> str:
        return (
            f"{COMMAND} auth --connections {','.join(map(str, self.connections))}"
            f" --duration {self.duration_s}s --warmup {self.warmup_s}s --rounds {self.rounds}"
        )


def auth_servers(model_dir: Path, credentials: BenchCredentials) -> dict[str, ServerSpec]:
    """The service with authentication and rate limiting on, and with both off."""
    on = churn_service(
        model_dir, workers=WORKERS, env=COMMON_ENV, name="auth-on", credentials=credentials
    )
    off = churn_service(
        model_dir,
        workers=WORKERS,
        env={**COMMON_ENV, "CHURN_AUTH_ENABLED": "false"},
        name="auth-off",
        credentials=credentials,
    )
    # auth-off is sent no key: nothing to verify, nothing to send.
    return {
        "auth-on": on,
        "auth-off": ServerSpec(off.name, off.argv, off.workers, off.ready_path, off.env),
    }


def _measure_over_http(options: AuthBenchOptions) -> list[ABRun]:
    with tempfile.TemporaryDirectory(prefix=f"{WORK_DIR_PREFIX}auth-") as work_name:
        work = Path(work_name)
        wrk = Wrk(work)
        bodies = write_bodies(
            work / "bodies.jsonl", prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
        )
        log("creating the bench's API key (churn-mlops keys create)")
        specs = auth_servers(options.model_dir, provision_credentials(work))
        servers: dict[str, RunningServer] = {}
        with ExitStack() as stack:
            for name in SERVERS:
                servers[name] = stack.enter_context(
                    start_server(specs[name], options.out_dir / "logs")
                )
                log(f"started {name} on port {servers[name].port}")
            return run_ab(
                wrk,
                servers,
                bodies,
                connections=options.connections,
                rounds=options.rounds,
                duration_s=options.duration_s,
                warmup_s=options.warmup_s,
                log=log,
            )


def run_auth_suite(options: AuthBenchOptions) -> str:
    """Run the suite; the markdown report (also written to `options.out_dir`)."""
    started = datetime.now(UTC)
    runs = _measure_over_http(options)
    log("timing the guard and the whole app in process")
    guard_us = guard_cost_us()
    app_us = app_cost_us(options.model_dir)
    meta = {
        "command": options.command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": options.rounds,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "model_version": options.model_version,
    }
    report = render(runs, options.connections, guard_us, meta, app_us)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    (options.out_dir / "auth-report.md").write_text(report)
    document = {
        **meta,
        "guard_us": guard_us,
        "app_us": app_us,
        "runs": [
            {
                "server": r.server,
                "connections": r.connections,
                "round": r.round,
                "server_cpu_us": r.cpu_us,
                **r.result.to_dict(),
            }
            for r in runs
        ],
    }
    (options.out_dir / "auth-results.json").write_text(json.dumps(document, indent=2))
    return report
