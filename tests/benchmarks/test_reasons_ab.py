"""The reason-codes bench: its in-process rates and its report (the HTTP part is the http_ab
machinery's, tested there)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.reasons_ab import EXPLAINED, PLAIN, asgi_cpu, kernel_rates, report
from churn_mlops.model.artifact import ModelArtifact


def test_kernel_rates_time_each_variant_every_round(artifact: ModelArtifact) -> None:
    rates = kernel_rates(artifact, batch_rows=300, rounds=3)

    assert list(rates) == [
        "TreeSHAP kernel",
        "reasons (kernel + top 5 documents)",
        "scoring alone (compiled forest)",
    ]
    assert all(len(figures) == 3 and min(figures) > 0 for figures in rates.values())


def test_the_report_gives_medians_and_the_explained_share() -> None:
    kernel = {"TreeSHAP kernel": [100_000.0, 300_000.0, 200_000.0]}
    http = {PLAIN: [(1000.0, 400.0), (1200.0, 380.0), (900.0, 420.0)],
            EXPLAINED: [(800.0, 500.0), (700.0, 520.0), (750.0, 510.0)]}  # fmt: skip

    lines = report(kernel, http)

    assert "| TreeSHAP kernel | 200,000 | 3 |" in lines
    assert "| unexplained | 1,000 | 400.0 | 3 |" in lines
    assert "| explained | 750 | 510.0 | 3 |" in lines
    assert lines[-1] == (
        "explained / unexplained: 75.0 % of the RPS; +110.0 us of server CPU per request."
    )


def test_asgi_cpu_times_both_kinds_in_every_block(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    figures = asgi_cpu(artifact_dir, artifact, blocks=2, block_requests=50)

    assert set(figures) == {EXPLAINED, PLAIN}
    assert all(len(values) == 2 and min(values) > 0 for values in figures.values())
    lines = report({"TreeSHAP kernel": [1.0]}, {EXPLAINED: [], PLAIN: []}, figures)
    assert lines[-1].startswith("explained adds ")
