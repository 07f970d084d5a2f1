"""The drift report's HTML rendered by headless Chromium (Debian's `chromium`, `make tools`),
offline: the page paints its table and its plots from the file alone (no fetch could succeed),
and the screenshot is not blank: dark text, and the recent rows' bars in their colour."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.observability.drift_html import render_report
from churn_mlops.observability.drift_report import DriftSample, compare, parse_since, profile_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

WINDOW = (1200, 1600)
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
RECENT_BARS = (0x15, 0x65, 0xC0)  # drift_html's colour of the recent proportions


@pytest.fixture(scope="module")
def browser() -> str:
    """The `chromium` command; a failure under CI (`CI=true`), a skip elsewhere, if missing."""
    path = shutil.which("chromium")
    if path is None:
        reason = "chromium is not installed (`make tools` installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the drift report must be rendered)")
        pytest.skip(reason)
    return path


def screenshot(browser: str, page: Path, out: Path, profile: Path) -> bytes:
    """`page` rendered by headless Chromium, offline, as a PNG of `WINDOW`."""
    command = [
        browser,
        "--headless",
        # Tests run as root, where Chromium's sandbox refuses to start; the page is our own.
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        OFFLINE,
        "--virtual-time-budget=5000",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={out}",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return out.read_bytes()


def test_the_report_renders_its_table_and_plots(
    browser: str, artifact: ModelArtifact, dataset: TelcoDataset, tmp_path: Path
) -> None:
    import matplotlib.image

    rows = np.concatenate(
        [
            artifact.encoder.encode_row({**f, "tenure": f["tenure"] // 2, "contract": "Two year"})
            for f in list(dataset.feature_rows())[:800]
        ]
    )
    probabilities = np.asarray(ChurnPredictor(artifact).probabilities(rows), dtype=np.float64)
    report = compare(
        profile_of(artifact),
        DriftSample(rows, probabilities, logged_rows=len(rows)),
        model_version=artifact.version,
        since=parse_since("7d"),
        source="log",
    )
    page = tmp_path / "report.html"
    page.write_text(render_report(report), encoding="utf-8")

    png = screenshot(browser, page, tmp_path / "report.png", tmp_path / "profile")

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW
    pixels = (matplotlib.image.imread(tmp_path / "report.png")[..., :3] * 255).round()
    dark = (pixels.max(axis=2) < 100).mean()
    bars = (np.abs(pixels - np.asarray(RECENT_BARS)).max(axis=2) <= 8).mean()
    assert dark > 0.002, f"{dark:.4%} of the pixels are text-dark: the table did not paint"
    assert bars > 0.001, f"{bars:.4%} of the pixels are the bars' blue: no plot painted"
