"""`prediction-log-ab --features`: one run compares the log without and with the scored rows'
features, and the features-on app really writes them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from benchmarks.prediction_log_ab import PredictionLogABOptions, run_prediction_log_ab

pytestmark = pytest.mark.timeout(180)


def test_features_mode_measures_the_log_without_and_with_features(
    artifact_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "churn.db"
    monkeypatch.setenv("CHURN_PREDICTION_LOG_SPILL_PATH", str(tmp_path / "spill.jsonl"))
    options = PredictionLogABOptions(
        f"sqlite:///{path}", artifact_dir, 1, 1, 0, 1, 1, False, None, features=True
    )
    lines = run_prediction_log_ab(
        options, in_process=True, blocks=2, block_requests=20, record_batches=20
    )

    assert lines[0].startswith("record(): ")
    assert lines[1].startswith("record(features=76 bytes): ")
    assert [line.split(" | ")[0] for line in lines[4:6]] == ["| features-off", "| features-on"]
    assert lines[6].startswith("features-on adds ")
    connection = sqlite3.connect(path)
    try:
        with_features, without, lengths = connection.execute(
            "SELECT count(features), count(*) - count(features), "
            "group_concat(DISTINCT length(features)) FROM predictions"
        ).fetchone()
    finally:
        connection.close()
    # Both apps log every request (warm-up included); only the features-on app its rows.
    assert with_features >= 2 * 20
    assert without >= 2 * 20
    assert lengths == "76"
