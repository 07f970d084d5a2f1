"""The drift report as one self-contained HTML file: no script, no stylesheet or font to fetch,
every plot an inline PNG (`data:` URI), so it opens from disk, a mail attachment or a CI
artifact alike.

The plots are matplotlib's (the `drift` extra), imported only here and only when a report is
rendered: the service never loads it. PNG rather than SVG: 20 bar plots as SVG made a file of
about 1 MB and slow to paint; as 80-dpi PNGs they take about 15 KB each.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from html import escape
from typing import Any

import numpy as np

from churn_mlops.observability.drift_report import (
    DRIFT_PSI,
    WATCH_PSI,
    BinnedDrift,
    DriftReport,
    DriftReportError,
)

INSTALL_HINT = "pip install 'churn-mlops[drift]'"
_COLOURS = {"ok": "#2e7d32", "watch": "#ef6c00", "drift": "#c62828"}
_EXPECTED, _ACTUAL = "#90a4ae", "#1565c0"


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), or the error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise DriftReportError(
            f"the drift report's plots need matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def bar_plot(plt: Any, binned: BinnedDrift) -> str:
    """Expected against actual proportion per bin, as a base64 PNG."""
    positions = np.arange(len(binned.labels))
    width = max(4.2, min(9.0, 0.55 * len(binned.labels) + 1.5))
    figure, axes = plt.subplots(figsize=(width, 2.6), dpi=80)
    try:
        axes.bar(positions - 0.2, binned.expected, 0.4, label="training", color=_EXPECTED)
        axes.bar(positions + 0.2, binned.actual, 0.4, label="recent", color=_ACTUAL)
        axes.set_xticks(positions)
        axes.set_xticklabels(binned.labels, rotation=30, ha="right", fontsize=7)
        axes.set_ylabel("share of rows", fontsize=8)
        axes.tick_params(axis="y", labelsize=7)
        axes.set_title(
            f"{binned.name}: PSI {binned.psi:.3f} ({binned.status})",
            fontsize=9,
            color=_COLOURS[binned.status],
        )
        axes.legend(fontsize=7, frameon=False)
        axes.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px;
       color: #1c2833; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #566573; } table { border-collapse: collapse; margin-top: 8px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #d5d8dc; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; } .ok { color: #2e7d32; } .watch { color: #ef6c00; }
.drift { color: #c62828; }
.plots, .top { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.plots img, .top img { border: 1px solid #eaecee; } .top img { margin-top: 8px; }
"""


def _row(binned: BinnedDrift) -> str:
    status = binned.status
    return (
        f"<tr><td>{escape(binned.name)}</td><td>{escape(binned.kind)}</td>"
        f'<td class="num">{binned.psi:.4f}</td>'
        f'<td class="status {status}">{status}</td></tr>'
    )


def _figure(binned: BinnedDrift, png: str) -> str:
    alt = escape(f"{binned.name}: training against recent proportions per bin")
    return f'<img alt="{alt}" src="data:image/png;base64,{png}">'


def render_report(report: DriftReport, progress: Callable[[int, int], None] | None = None) -> str:
    """The report's HTML; `progress(done, total)` after each plot."""
    plt = pyplot()
    plotted = [report.prediction, *report.features]
    images: list[str] = []
    for done, binned in enumerate(plotted, start=1):
        images.append(_figure(binned, bar_plot(plt, binned)))
        if progress is not None:
            progress(done, len(plotted))
    prediction = report.prediction
    drifted = report.drifted
    verdict = (
        f"{len(drifted)} of {len(report.features)} features drifted: {', '.join(drifted)}"
        if drifted
        else f"no feature drifted (every PSI at most {DRIFT_PSI})"
    )
    rows = "\n".join(_row(feature) for feature in report.features)
    title = f"Drift report: model {report.model_version}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{report.sample_rows:,} rows since {report.since:%Y-%m-%d %H:%M} UTC
({report.logged_rows:,} from the prediction log, {report.customer_rows:,} stored customers)
against the {report.training_rows:,} training rows of the model's reference profile;
generated {report.generated_at:%Y-%m-%d %H:%M} UTC.</p>
<p><strong>{escape(verdict)}.</strong> Prediction distribution: PSI {prediction.psi:.4f},
<span class="status {prediction.status}">{prediction.status}</span>.</p>
<h2>Population stability index per feature</h2>
<p class="meta">ok below {WATCH_PSI}, watch from {WATCH_PSI} to {DRIFT_PSI}, drift above
{DRIFT_PSI}. Bins: deciles of the training values for numbers (and a bin for missing ones),
one per category (and one for unseen or missing) for categories.</p>
<div class="top">
<table><thead><tr><th>feature</th><th>kind</th><th>PSI</th><th>status</th></tr></thead>
<tbody>
{rows}
<tr><td><em>prediction</em></td><td>probability</td><td class="num">{prediction.psi:.4f}</td>
<td class="status {prediction.status}">{prediction.status}</td></tr>
</tbody></table>
{images[0]}
</div>
<h2>Training against recent, per feature</h2>
<div class="plots">
{chr(10).join(images[1:])}
</div>
</body></html>
"""
