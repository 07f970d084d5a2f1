"""The spill files: appends and claims that several workers of one host can share."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from churn_mlops.db.prediction_log.ids import identify
from churn_mlops.db.prediction_log.spill_files import (
    append_spill,
    claim_spill_files,
    spill_files_exist,
)

pytestmark = pytest.mark.timeout(30)


def _rows(
    count: int, start: int = 0
) -> list[tuple[str | None, str, float, bool, bool, float, float]]:
    return [(f"c{start + n}", "v1", 0.5, False, False, 1.0, 1.7e9 + n) for n in range(count)]


def test_a_claim_moves_the_live_file_aside(spill_path: Path) -> None:
    rows = identify(_rows(5))
    append_spill(spill_path, rows)
    claimed = claim_spill_files(spill_path)
    try:
        assert len(claimed) == 1
        assert not spill_path.exists()
        assert claimed[0].read(100) == rows
        assert claimed[0].read(100) == []
    finally:
        for spill in claimed:
            spill.close()


def test_appends_after_a_claim_start_a_new_file(spill_path: Path) -> None:
    first, second = identify(_rows(3)), identify(_rows(4, start=3))
    append_spill(spill_path, first)
    claimed = claim_spill_files(spill_path)
    append_spill(spill_path, second)
    try:
        assert claimed[0].read(100) == first
    finally:
        claimed[0].close()
    again = claim_spill_files(spill_path)
    try:
        assert sorted(row for spill in again for row in spill.read(100)) == sorted(first + second)
    finally:
        for spill in again:
            spill.close()


def test_a_file_another_worker_replays_is_not_claimed(spill_path: Path) -> None:
    append_spill(spill_path, identify(_rows(2)))
    held = claim_spill_files(spill_path)
    try:
        assert claim_spill_files(spill_path) == []
    finally:
        held[0].close()
    reclaimed = claim_spill_files(spill_path)
    assert len(reclaimed) == 1
    reclaimed[0].close()


def test_a_finished_replay_removes_its_file(spill_path: Path) -> None:
    append_spill(spill_path, identify(_rows(2)))
    claimed = claim_spill_files(spill_path)
    claimed[0].read(10)
    claimed[0].finish()
    claimed[0].close()
    assert list(spill_path.parent.iterdir()) == []


def test_concurrent_appends_and_claims_lose_no_row(spill_path: Path) -> None:
    appenders, chunks, per_chunk = 4, 50, 20
    read: list[str | None] = []

    def append(worker: int) -> None:
        for chunk in range(chunks):
            start = (worker * chunks + chunk) * per_chunk
            append_spill(spill_path, identify(_rows(per_chunk, start)))

    def claim_until(stop: threading.Event) -> None:
        while True:
            done = stop.is_set()
            for spill in claim_spill_files(spill_path):
                read.extend(row.external_customer_id for row in spill.read(1_000_000))
                spill.finish()
                spill.close()
            if done:
                return

    stop = threading.Event()
    claimer = threading.Thread(target=claim_until, args=(stop,))
    claimer.start()
    writers = [threading.Thread(target=append, args=(n,)) for n in range(appenders)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    claimer.join()
    expected = [f"c{n}" for n in range(appenders * chunks * per_chunk)]
    assert sorted(read, key=str) == sorted(expected)


def test_an_append_waits_for_the_lock_of_the_live_file(spill_path: Path) -> None:
    append_spill(spill_path, identify(_rows(1)))
    fd = os.open(spill_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    appended = threading.Event()

    def append() -> None:
        append_spill(spill_path, identify(_rows(1, start=1)))
        appended.set()

    thread = threading.Thread(target=append)
    thread.start()
    try:
        assert not appended.wait(0.2)
    finally:
        os.close(fd)  # releases the lock
    thread.join(5)
    assert appended.is_set()
    assert len([line for line in spill_path.read_bytes().splitlines() if line]) == 2


def test_spill_files_exist_while_a_live_or_replay_file_holds_rows(spill_path: Path) -> None:
    spill_path.parent.mkdir(parents=True)
    assert not spill_files_exist(spill_path)
    spill_path.touch()
    assert not spill_files_exist(spill_path)
    append_spill(spill_path, identify(_rows(1)))
    assert spill_files_exist(spill_path)
    claimed = claim_spill_files(spill_path)
    assert spill_files_exist(spill_path)  # the replay file, until its rows are in the database
    claimed[0].finish()
    claimed[0].close()
    assert not spill_files_exist(spill_path)
