"""Live drift windows: the sliding ring of buckets, the merge of several workers' counts, and the
PSI gauges computed from the merged counts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.model.drift_profile import ReferenceProfile
from churn_mlops.model.features import FeatureEncoder, FloatMatrix
from churn_mlops.observability.drift import BUCKETS, COUNTS_PREFIX, DriftMonitor, DriftWindow

TENURE = FEATURE_NAMES.index("tenure")
WINDOW = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rows(dataset: TelcoDataset) -> FloatMatrix:
    return FeatureEncoder.fit(dataset.schema, dataset.columns).encode_columns(dataset.columns)


@pytest.fixture(scope="module")
def probabilities(rows: FloatMatrix) -> np.ndarray:
    return np.random.default_rng(3).beta(2, 5, size=len(rows))


@pytest.fixture(scope="module")
def profile(
    dataset: TelcoDataset, rows: FloatMatrix, probabilities: np.ndarray
) -> ReferenceProfile:
    return ReferenceProfile.build(
        rows, probabilities, FeatureEncoder.fit(dataset.schema, dataset.columns)
    )


def scorer(probabilities: np.ndarray, rows: FloatMatrix):  # type: ignore[no-untyped-def]
    """A model whose answer for a row of `rows` is its probability (rows are looked up by id)."""
    lookup = {row.tobytes(): p for row, p in zip(rows, probabilities, strict=True)}

    def score(batch: FloatMatrix) -> np.ndarray:
        return np.array([lookup.get(row.tobytes(), 0.5) for row in batch])

    return score


def direct_counts(profile: ReferenceProfile, rows: FloatMatrix, p: np.ndarray) -> np.ndarray:
    parts = [bins.bin_counts(rows[:, i]) for i, bins in enumerate(profile.features)]
    return np.concatenate([*parts, profile.prediction.bin_counts(p)])


def scrape(monitor: DriftMonitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(monitor.collector())
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_window_counts_what_was_scored(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray
) -> None:
    window = DriftWindow(profile, WINDOW, Clock())
    window.observe(rows[:100], probabilities[:100])
    window.observe(rows[100:130], probabilities[100:130])
    assert (
        window.counts().tolist() == direct_counts(profile, rows[:130], probabilities[:130]).tolist()
    )


def test_window_slides_bucket_by_bucket(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray
) -> None:
    clock = Clock()
    window = DriftWindow(profile, WINDOW, clock)
    window.observe(rows[:10], probabilities[:10])
    window.fold()
    clock.now += WINDOW / 2
    window.observe(rows[10:30], probabilities[10:30])
    window.fold()
    prediction_rows = lambda: int(profile.split_counts(window.counts())[-1].sum())  # noqa: E731
    assert prediction_rows() == 30
    clock.now += WINDOW / 2 + WINDOW / BUCKETS  # the first rows' bucket has left the window
    assert prediction_rows() == 20
    clock.now += 10 * WINDOW  # long idle: everything left
    assert prediction_rows() == 0
    window.observe(rows[:5], probabilities[:5])
    assert prediction_rows() == 5


def test_many_pending_calls_are_folded_by_the_call_that_fills_the_queue(
    profile: ReferenceProfile,
    rows: FloatMatrix,
    probabilities: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("churn_mlops.observability.drift.MAX_PENDING_CALLS", 4)
    window = DriftWindow(profile, WINDOW, Clock())
    for i in range(4):
        window.observe(rows[i : i + 1], probabilities[i : i + 1])
    assert not window._pending  # folded without a refresh
    assert int(profile.split_counts(window.counts())[-1].sum()) == 4


def test_observing_wraps_the_score_and_returns_its_answer(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray
) -> None:
    monitor = DriftMonitor(WINDOW, clock=Clock())
    score = monitor.observing("v1", profile, scorer(probabilities, rows))
    answer = score(rows[:50])
    assert answer.tolist() == probabilities[:50].tolist()
    counts = monitor.window_counts()["v1"]
    assert counts.tolist() == direct_counts(profile, rows[:50], probabilities[:50]).tolist()


def test_model_without_profile_is_served_unobserved_and_logged_once(
    caplog: pytest.LogCaptureFixture, rows: FloatMatrix, probabilities: np.ndarray
) -> None:
    monitor = DriftMonitor(WINDOW)
    score = scorer(probabilities, rows)
    with caplog.at_level(logging.WARNING, logger="churn_mlops.drift"):
        assert monitor.observing("v0", None, score) is score
        assert monitor.observing("v0", None, score) is score
    assert [r.getMessage() for r in caplog.records if "no drift profile" in r.getMessage()] == [
        caplog.records[0].getMessage()
    ]
    assert "v0" in caplog.records[0].getMessage()
    assert monitor.window_counts() == {}


def test_psi_of_two_workers_is_psi_of_their_merged_counts(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray, tmp_path: Path
) -> None:
    # Two workers: one sees shifted tenures, the other unchanged rows. The merged PSI is that
    # of all their rows together, not a mean or maximum of each worker's PSI.
    drifted = rows[:1500].copy()
    drifted[:, TENURE] /= 2
    first = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=os.getpid())
    second = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=os.getppid())
    answers = np.concatenate(
        [
            first.observing("v1", profile, scorer(probabilities, rows))(drifted),
            second.observing("v1", profile, scorer(probabilities, rows))(rows[1500:3000]),
        ]
    )
    second.refresh()
    assert (tmp_path / f"{COUNTS_PREFIX}{os.getppid()}.json").is_file()

    gauges = scrape(first)
    together = np.concatenate([drifted, rows[1500:3000]])
    features, prediction = profile.psi(direct_counts(profile, together, answers))
    tenure = gauges[("churn_feature_psi", (("feature", "tenure"), ("version", "v1")))]
    assert tenure == pytest.approx(features["tenure"], rel=1e-12)
    alone = profile.features[TENURE].psi(profile.features[TENURE].bin_counts(drifted[:, TENURE]))
    assert tenure < alone / 1.5
    assert gauges[("churn_prediction_psi", (("version", "v1"),))] == pytest.approx(prediction)
    assert gauges[("churn_drift_window_rows", (("version", "v1"),))] == 3000

    second.close()  # a stopped worker's rows leave the merged window
    gauges = scrape(first)
    assert gauges[("churn_drift_window_rows", (("version", "v1"),))] == 1500


def test_a_dead_workers_counts_are_dropped(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray, tmp_path: Path
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    dead_pid = int(gone.stdout)
    crashed = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=dead_pid)
    crashed.observing("v1", profile, scorer(probabilities, rows))(rows[:100])
    crashed.refresh()  # it never closed
    alive = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=os.getpid())
    alive.observing("v1", profile, scorer(probabilities, rows))(rows[100:150])
    assert alive.merged_counts()["v1"].sum() == 50 * (len(FEATURE_NAMES) + 1)
    assert not (tmp_path / f"{COUNTS_PREFIX}{dead_pid}.json").exists()


def test_a_version_only_another_worker_served_is_judged_by_its_published_profile(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray, tmp_path: Path
) -> None:
    other = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=os.getppid())
    other.observing("v2", profile, scorer(probabilities, rows))(rows[:200])
    other.refresh()
    scraping = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=os.getpid())
    gauges = scrape(scraping)
    assert gauges[("churn_drift_window_rows", (("version", "v2"),))] == 200
    assert ("churn_feature_psi", (("feature", "contract"), ("version", "v2"))) in gauges


def test_a_closed_monitor_publishes_nothing_more(
    profile: ReferenceProfile, rows: FloatMatrix, probabilities: np.ndarray, tmp_path: Path
) -> None:
    monitor = DriftMonitor(WINDOW, tmp_path, clock=Clock(), pid=os.getppid())
    monitor.observing("v1", profile, scorer(probabilities, rows))(rows[:10])
    monitor.refresh()
    monitor.close()
    monitor.refresh()
    assert not list(tmp_path.glob(f"{COUNTS_PREFIX}*"))
