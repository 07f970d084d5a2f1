"""The auth suite's report: per-round figures, medians, and the ratio of the medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.constants import WORKERS, WRK_THREADS
from benchmarks.http_ab import ABRun
from benchmarks.load import LoadResult


def _median(
    runs: Sequence[ABRun], server: str, count: int, pick: Callable[[LoadResult], float]
) -> float:
    return statistics.median(
        pick(r.result) for r in runs if r.server == server and r.connections == count
    )


def paired_ratio(runs: Sequence[ABRun], count: int) -> float:
    """The median over rounds of auth-on RPS / auth-off RPS, each pair measured back to back:
    steadier than the ratio of the medians when the machine's load drifts between rounds."""
    ratios = []
    for round_ in sorted({r.round for r in runs}):
        pair = {
            r.server: r.result.rps for r in runs if r.connections == count and r.round == round_
        }
        if len(pair) == 2 and pair["auth-off"] > 0:
            ratios.append(pair["auth-on"] / pair["auth-off"])
    return statistics.median(ratios) if ratios else float("nan")


def _round_rows(runs: Sequence[ABRun], connections: Sequence[int]) -> list[str]:
    lines = [
        "| connections | round | auth on RPS | auth off RPS | on / off | on p50 ms | off p50 ms "
        "| on p99 ms | off p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count in connections:
        for round_ in sorted({r.round for r in runs}):
            pair = {
                r.server: r.result for r in runs if r.connections == count and r.round == round_
            }
            if len(pair) < 2:
                continue
            on, off = pair["auth-on"], pair["auth-off"]
            lines.append(
                f"| {count} | {round_ + 1} | {on.rps:,.0f} | {off.rps:,.0f} | "
                f"{on.rps / off.rps:.3f} | "
                f"{on.latency_ms['p50']:.2f} | {off.latency_ms['p50']:.2f} | "
                f"{on.latency_ms['p99']:.2f} | {off.latency_ms['p99']:.2f} |"
            )
    return lines


def _median_rows(runs: Sequence[ABRun], connections: Sequence[int]) -> list[str]:
    lines = [
        "| connections | median RPS auth on | median RPS auth off | on / off "
        "| median of the rounds' on / off |",
        "|---:|---:|---:|---:|---:|",
    ]
    for count in connections:
        rps_on = _median(runs, "auth-on", count, lambda r: r.rps)
        rps_off = _median(runs, "auth-off", count, lambda r: r.rps)
        lines.append(
            f"| {count} | {rps_on:,.0f} | {rps_off:,.0f} | {rps_on / rps_off:.3f} "
            f"| {paired_ratio(runs, count):.3f} |"
        )
    return lines


def render(
    runs: Sequence[ABRun],
    connections: Sequence[int],
    guard_us: dict[str, float],
    meta: dict[str, Any],
    app_us: dict[str, float] | None = None,
) -> str:
    failed = {r.server: r.result.failed for r in runs if r.result.failed}
    lines = [
        "## Authentication cost",
        "",
        f"`{meta['command']}` ({meta['started']}, {meta['rounds']} rounds of "
        f"{meta['duration_s']} s after {meta['warmup_s']} s of warm-up, {WORKERS} workers each, "
        f"wrk {WRK_THREADS} threads, model {meta['model_version']}):",
        "",
        *_round_rows(runs, connections),
        "",
        *_median_rows(runs, connections),
        "",
        f"Non-2xx or failed requests: {failed or 'none'}.",
        "",
        "The guard of the raw `/predict` path in process (a cached API key, the scope, the "
        "bucket), median of 5 x 200,000 calls: "
        f"{guard_us['auth-on']:.2f} µs with authentication, {guard_us['auth-off']:.2f} µs without.",
        "",
    ]
    if app_us:
        lines += [
            "The whole app in process (raw ASGI `POST /predict`, no HTTP, cache off), median of "
            f"6 alternating blocks of 5,000 requests: {app_us['auth-on']:.1f} µs a request with "
            f"authentication, {app_us['auth-off']:.1f} µs without "
            f"(+{app_us['auth-on'] - app_us['auth-off']:.1f} µs).",
            "",
        ]
    return "\n".join(lines)
