"""Row ids: UUIDv7-style, time-ordered by the row's own timestamp, unique."""

from __future__ import annotations

import uuid

from churn_mlops.db.prediction_log.ids import LoggedPrediction, RecordedRow, identify


def _rows(created: list[float]) -> list[RecordedRow]:
    return [(f"c{n}", "v1", 0.5, False, True, 1.0, when) for n, when in enumerate(created)]


def test_ids_are_version_7_uuids_in_hex() -> None:
    for row in identify(_rows([1.7e9 + n for n in range(50)])):
        parsed = uuid.UUID(hex=row.id)
        assert row.id == parsed.hex
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_an_id_starts_with_the_rows_millisecond_timestamp() -> None:
    (row,) = identify(_rows([1_790_000_000.123456]))
    assert int(row.id[:12], 16) == 1_790_000_000_123


def test_ids_sort_as_their_rows_were_recorded() -> None:
    rows = identify(_rows([1.7e9 + n / 100 for n in range(100)]))
    assert sorted(rows, key=lambda row: row.id) == rows


def test_ids_within_one_millisecond_are_distinct() -> None:
    rows = identify(_rows([1.7e9] * 1000))
    assert len({row.id for row in rows}) == 1000


def test_an_identified_row_keeps_the_recorded_values() -> None:
    recorded: RecordedRow = ("c7", "v3", 0.25, True, False, 2.5, 1.7e9)
    (row,) = identify([recorded])
    assert row == LoggedPrediction(row.id, *recorded)
