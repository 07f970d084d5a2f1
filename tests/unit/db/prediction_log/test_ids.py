"""Row ids: UUIDv7-style, time-ordered by the row's own timestamp, unique."""

from __future__ import annotations

import uuid

import pytest

from churn_mlops.db.prediction_log.ids import LoggedPrediction, RecordedRow, identify


def _rows(created: list[float]) -> list[RecordedRow]:
    return [(f"c{n}", "v1", 0.5, False, True, 1.0, when) for n, when in enumerate(created)]


# One row is made with an f-string, a batch of 32 or more as an array: both ways are checked.
SIZES = pytest.mark.parametrize("count", [1, 31, 32, 500])


@SIZES
def test_ids_are_version_7_uuids_in_hex(count: int) -> None:
    for row in identify(_rows([1.7e9 + n for n in range(count)])):
        parsed = uuid.UUID(hex=row.id)
        assert row.id == parsed.hex
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


@SIZES
def test_an_id_starts_with_the_rows_millisecond_timestamp(count: int) -> None:
    created = [1_790_000_000.123456 + n for n in range(count)]
    for row, when in zip(identify(_rows(created)), created, strict=True):
        assert int(row.id[:12], 16) == int(when * 1000)


@SIZES
def test_ids_sort_as_their_rows_were_recorded(count: int) -> None:
    rows = identify(_rows([1.7e9 + n / 100 for n in range(count)]))
    assert sorted(rows, key=lambda row: row.id) == rows


def test_ids_within_one_millisecond_are_distinct() -> None:
    rows = identify(_rows([1.7e9] * 1000))
    assert len({row.id for row in rows}) == 1000


@SIZES
def test_an_identified_row_keeps_the_recorded_values(count: int) -> None:
    recorded: list[RecordedRow] = [
        ("c7", "v3", n / count, True, False, 2.5, 1.7e9) for n in range(count)
    ]
    for row, values in zip(identify(recorded), recorded, strict=True):
        assert row == LoggedPrediction(row.id, *values)


@SIZES
def test_whole_recorded_rows_become_logged_predictions_with_every_field(count: int) -> None:
    recorded: list[RecordedRow] = [
        (f"c{n}", "v3", n / count, True, False, 2.5, 1.7e9, "v4", 0.5, bytes([n % 256]))
        for n in range(count)
    ]
    for row, values in zip(identify(recorded), recorded, strict=True):
        assert type(row) is LoggedPrediction
        assert row == LoggedPrediction(row.id, *values)
        assert (row.challenger_version, row.features) == ("v4", values[-1])
