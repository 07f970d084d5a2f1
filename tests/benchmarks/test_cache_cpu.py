"""The in-process cache A/B: every workload measured on every pipeline, in every round."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cache_cpu import WORKLOADS, measure, report

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_measure_gives_one_cpu_figure_per_round_for_each_workload_and_pipeline(
    artifact_dir: Path,
) -> None:
    results = await measure(artifact_dir, rounds=2, calls=64, callers=4, redis_url=None)
    assert list(results) == list(WORKLOADS)
    for servers in results.values():
        assert list(servers) == ["cache off", "L1 only"]
        assert all(len(figures) == 2 and min(figures) > 0 for figures in servers.values())
    lines = report(results)
    assert len(lines) == len(WORKLOADS) * 2
    assert lines[0].startswith("hit    cache off")
    assert "1.00x cache-off throughput" in lines[0]
