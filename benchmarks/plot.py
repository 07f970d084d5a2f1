"""The latency plot of a service run: RPS and p99 per server against connections."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.summary import LABELS, Summary


def plot(summaries: Sequence[Summary], path: Path) -> Path | None:
    """RPS and p99 per server against connections, for `/predict`; None if nothing to plot."""
    single = [s for s in summaries if s.scenario == "predict"]
    if not single:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (rps_axes, p99_axes) = pyplot.subplots(1, 2, figsize=(11, 4.5))
    for server in dict.fromkeys(s.server for s in single):
        # A run without answers has no point on a log scale.
        points = sorted(
            (s for s in single if s.server == server and s.requests > 0),
            key=lambda s: s.connections,
        )
        x = [s.connections for s in points]
        label = LABELS.get(server, server)
        rps_axes.plot(x, [s.rps for s in points], marker="o", label=label)
        p99_axes.plot(x, [s.latency_ms["p99"] for s in points], marker="o", label=label)
    levels = sorted({s.connections for s in single})
    for axes, title, unit in (
        (rps_axes, "throughput", "requests/s"),
        (p99_axes, "p99 latency", "ms"),
    ):
        axes.set_title(f"POST /predict: {title}")
        axes.set_xlabel("connections")
        axes.set_ylabel(unit)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(levels, labels=[str(level) for level in levels])
        axes.minorticks_off()
        axes.grid(True, alpha=0.3)
    p99_axes.axhline(1000, color="grey", linestyle="--", linewidth=1, label="SLO: p99 < 1 s")
    rps_axes.legend(fontsize="small")
    p99_axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path
