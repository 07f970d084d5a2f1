"""What reason codes cost (`"explain": true`, issue 18).

    flock /tmp/churn-bench.lock .venv/bin/python -m benchmarks reasons-ab [--rounds 5]

In process: rows per second of 10,000-row batches of the shipped customers through the TreeSHAP
kernel alone (`TreeExplainer.explain`), through the reasons the API answers (kernel, ranking and
the JSON-ready documents, `ReasonCodes.of_rows`), and through the compiled forest's scoring for
scale; the three take turns in every round, medians reported.

Over HTTP: one `churn-mlops serve` (2 workers, cache off so every request reaches the model, no
database, no authentication) loaded by wrk with single `/predict` bodies, in turns with and
without `"explain": true` (the first rotating every round), each run after its warm-up; median
RPS and server CPU per request, and the explained share of the unexplained RPS.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from benchmarks.constants import DISTINCT_CUSTOMERS, REQUEST_TIMEOUT_S, WRK_THREADS
from benchmarks.http_ab import cpu_seconds
from benchmarks.inprocess import (
    Variant,
    cpu_table,
    cycle,
    interleaved_blocks,
    predict_variant,
    serving_all,
    turns,
)
from benchmarks.load import Wrk, prediction_bodies, write_bodies
from benchmarks.servers import churn_service, start_server, wait_until_idle
from benchmarks.terminal import log
from churn_mlops.api.app import create_app
from churn_mlops.data import load_telco_csv
from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.reasons import ReasonCodes
from churn_mlops.settings import Settings

SERVICE_ENV = {
    "CHURN_CACHE_ENABLED": "false",
    "CHURN_DATABASE_URL": "",
    "CHURN_AUTH_ENABLED": "false",
    "CHURN_ENVIRONMENT": "test",
}
EXPLAINED, PLAIN = "explained", "unexplained"


@dataclass(frozen=True)
class ReasonsABOptions:
    model_dir: Path
    rounds: int
    duration_s: int
    warmup_s: int
    connections: int
    batch_rows: int
    out: Path | None = None


def kernel_rates(artifact: ModelArtifact, batch_rows: int, rounds: int) -> dict[str, list[float]]:
    """Rows per second of each in-process variant, one figure per round."""
    explainer = artifact.explainer
    if explainer is None:
        raise SystemExit("this model has no explainer.npz: train it again")
    dataset = load_telco_csv()
    rows = artifact.encoder.encode_columns(dataset.columns)
    rows = np.ascontiguousarray(np.resize(rows, (batch_rows, rows.shape[1])))
    values = [tuple(dataset.columns[n][i % len(dataset)] for n in FEATURE_NAMES) for i in
              range(batch_rows)]  # fmt: skip
    reasons = ReasonCodes(explainer, 5, artifact.version)
    variants: dict[str, Callable[[], object]] = {
        "TreeSHAP kernel": lambda: explainer.explain(rows),
        "reasons (kernel + top 5 documents)": lambda: reasons.of_rows(rows, values),
        "scoring alone (compiled forest)": lambda: artifact.forest.predict(rows),
    }
    for run in variants.values():
        run()  # compiled, caches warm
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name in turns(list(variants), round_):
            start = time.perf_counter()
            variants[name]()
            rates[name].append(batch_rows / (time.perf_counter() - start))
    return rates


def asgi_cpu(
    model_dir: Path, artifact: ModelArtifact, blocks: int, block_requests: int
) -> dict[str, list[float]]:
    """CPU microseconds per raw-ASGI `POST /predict` of the whole app (middleware included),
    with and without `"explain": true`, in blocks that take turns; one figure per block."""
    bodies = prediction_bodies(load_telco_csv(), DISTINCT_CUSTOMERS)
    explained = {body: orjson.dumps({**orjson.loads(body), "explain": True}) for body in bodies}
    settings = Settings(
        model_dir=model_dir,
        cache_enabled=False,
        database_url="",
        auth_enabled=False,
        environment="test",
        slow_request_ms=60_000,
    )

    async def drive() -> dict[str, list[float]]:
        async with serving_all({"app": create_app(settings, artifact)}) as running:
            app = running["app"]

            async def post_explained(body: bytes) -> None:
                await app.post("/predict", explained[body])

            variants = [predict_variant(PLAIN, app), Variant(EXPLAINED, post_explained)]
            timed = cycle(bodies, block_requests)
            return await interleaved_blocks(variants, timed, blocks, warmup=bodies[:500])

    return asyncio.run(drive())


def over_http(options: ReasonsABOptions) -> dict[str, list[tuple[float, float]]]:
    """(RPS, server CPU us per request) of each body kind, one pair per round."""
    dataset = load_telco_csv()
    plain = prediction_bodies(dataset, DISTINCT_CUSTOMERS)
    explained = [orjson.dumps({**orjson.loads(b), "explain": True}) for b in plain]
    out = options.out or Path(tempfile.mkdtemp(prefix="bench-reasons-"))
    spec = churn_service(options.model_dir, env=SERVICE_ENV, name="reasons")
    results: dict[str, list[tuple[float, float]]] = {EXPLAINED: [], PLAIN: []}
    with tempfile.TemporaryDirectory(prefix="bench-reasons-") as work_name:
        work = Path(work_name)
        bodies = {
            EXPLAINED: write_bodies(work / "explained.jsonl", explained),
            PLAIN: write_bodies(work / "plain.jsonl", plain),
        }
        wrk = Wrk(work)
        with start_server(spec, out / "logs") as server:
            for round_ in range(options.rounds):
                for kind in turns([PLAIN, EXPLAINED], round_):

                    def load(seconds: int, kind: str = kind) -> tuple[float, int, int]:
                        result = wrk.run(
                            server.port,
                            "/predict",
                            bodies[kind],
                            connections=options.connections,
                            threads=WRK_THREADS,
                            duration_s=seconds,
                            timeout_s=REQUEST_TIMEOUT_S,
                        )
                        return result.rps, result.requests, result.failed

                    if options.warmup_s:
                        load(options.warmup_s)
                        wait_until_idle(server)
                    before = cpu_seconds(server)
                    rps, answered, failed = load(options.duration_s)
                    cpu_us = (cpu_seconds(server) - before) / max(answered, 1) * 1e6
                    wait_until_idle(server)
                    results[kind].append((rps, cpu_us))
                    log(
                        f"round {round_ + 1} {kind:<12} {rps:>9,.1f} req/s  {cpu_us:.1f} us/req"
                        f"  failed {failed:,}"
                    )
    return results


def report(
    kernel: dict[str, list[float]],
    http: dict[str, list[tuple[float, float]]],
    asgi: dict[str, list[float]] | None = None,
) -> list[str]:
    lines = [
        "| in process, 10,000-row batches | median rows/s | rounds |",
        "|---|---:|---:|",
    ]
    for name, rates in kernel.items():
        lines.append(f"| {name} | {statistics.median(rates):,.0f} | {len(rates)} |")
    if http[PLAIN]:
        lines += [
            "",
            "| POST /predict over HTTP | median RPS | median server CPU us/request | runs |",
            "|---|---:|---:|---:|",
        ]
        medians = {}
        for kind in (PLAIN, EXPLAINED):
            rps = statistics.median(r for r, _ in http[kind])
            cpu = statistics.median(c for _, c in http[kind])
            medians[kind] = (rps, cpu)
            lines.append(f"| {kind} | {rps:,.0f} | {cpu:.1f} | {len(http[kind])} |")
        share = medians[EXPLAINED][0] / medians[PLAIN][0] * 100
        extra = medians[EXPLAINED][1] - medians[PLAIN][1]
        lines += ["", f"explained / unexplained: {share:.1f} % of the RPS; {extra:+.1f} us of "
                  "server CPU per request."]  # fmt: skip
    if asgi:
        lines += ["", "Raw ASGI in process (the app with its middleware, no HTTP):"]
        lines += ["", *cpu_table(asgi, EXPLAINED, PLAIN)]
    return lines


def run_reasons_ab(options: ReasonsABOptions, artifact: ModelArtifact, *, http: bool) -> list[str]:
    """The in-process rates, then (with `http`) the HTTP A/B; the report's lines."""
    kernel = kernel_rates(artifact, options.batch_rows, max(options.rounds, 5))
    cpu = asgi_cpu(options.model_dir, artifact, blocks=20, block_requests=2_000)
    results = over_http(options) if http else {EXPLAINED: [], PLAIN: []}
    return report(kernel, results, cpu)
