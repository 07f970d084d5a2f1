"""The shared multiprocess metrics directory: prepared empty, cleaned of dead workers and runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from churn_mlops.observability.metrics_dir import (
    prepare_multiprocess_dir,
    remove_abandoned_dirs,
    remove_dead_workers,
    shared_metrics_dir,
)


def test_prepare_multiprocess_dir_empties_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    (tmp_path / "counter_123.db").write_bytes(b"old")
    assert prepare_multiprocess_dir(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def test_remove_dead_workers_drops_only_gauges_of_gone_processes(tmp_path: Path) -> None:
    gone = 2**22 + 12345  # above Linux's default pid_max: no such process
    for name in (
        f"gauge_livesum_{gone}.db",
        f"gauge_livesum_{os.getpid()}.db",
        f"counter_{gone}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert remove_dead_workers(tmp_path) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{gone}.db"]
    )


def test_shared_metrics_dir_is_removed_after_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir(None) as path:
        assert path is not None
        assert path.is_dir()
        assert path.name.startswith(f"churn-metrics-{os.getpid()}-")
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    assert not path.exists()


def test_shared_metrics_dir_does_nothing_when_metrics_are_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir(None, enabled=False) as path:
        assert path is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_remove_abandoned_dirs_keeps_those_of_live_processes(tmp_path: Path) -> None:
    gone = 2**22 + 54321  # above Linux's default pid_max: no such process
    abandoned = tmp_path / f"churn-metrics-{gone}-abc"
    live = tmp_path / f"churn-metrics-{os.getpid()}-def"
    unrelated = tmp_path / "churn-metrics-old"
    for directory in (abandoned, live, unrelated):
        directory.mkdir()
    assert remove_abandoned_dirs(tmp_path) == [abandoned]
    assert live.exists()
    assert unrelated.exists()
