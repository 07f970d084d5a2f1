"""The compact encoding of logged features: 4 bytes per feature, read back bit for bit, and
kept through the spill file's JSON lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from churn_mlops.db.prediction_log.features import decode_rows, encode_row, encode_rows
from churn_mlops.db.prediction_log.ids import identify
from churn_mlops.db.prediction_log.spill_files import append_spill, claim_spill_files

pytestmark = pytest.mark.timeout(30)


def _matrix() -> np.ndarray:
    generator = np.random.default_rng(7)
    rows = generator.normal(size=(6, 19)).astype(np.float32)
    rows[1, 3] = np.nan
    rows[2, 0] = np.float32(3.4028235e38)
    rows[3, 5] = -0.0
    return rows


def test_rows_read_back_as_the_same_float32_values() -> None:
    rows = _matrix()
    blobs = encode_rows(rows)
    assert [len(blob) for blob in blobs] == [76] * 6
    decoded = decode_rows(blobs, 19)
    assert decoded.dtype == np.float32
    assert decoded.tobytes() == rows.tobytes()  # bit for bit: NaN and -0.0 included


def test_one_row_encodes_as_the_matrix_row_does() -> None:
    rows = _matrix()
    assert [encode_row(rows[n : n + 1]) for n in range(6)] == encode_rows(rows)


def test_a_row_of_another_width_is_refused() -> None:
    with pytest.raises(ValueError, match="72 bytes, not 76"):
        decode_rows([bytes(72)], 19)


def test_spilled_rows_keep_their_features(tmp_path: Path) -> None:
    spill_path = tmp_path / "predictions.jsonl"
    blobs = encode_rows(_matrix())
    recorded = [
        (f"c{n}", "v1", 0.5, False, False, 1.0, 1.7e9 + n, None, None, blob)
        for n, blob in enumerate(blobs)
    ]
    recorded.append(("plain", "v1", 0.5, False, False, 1.0, 1.7e9, None, None, None))
    rows = identify(recorded)
    append_spill(spill_path, rows)
    claimed = claim_spill_files(spill_path)
    try:
        assert claimed[0].read(100) == rows
    finally:
        for spill in claimed:
            spill.close()


def test_a_line_spilled_before_features_existed_reads_without_them(tmp_path: Path) -> None:
    spill_path = tmp_path / "predictions.jsonl"
    spill_path.write_bytes(
        b'["0190f3a0b1c27d4e8f901234567890ab","c1","v1",0.5,false,false,1.0,1.7e9,null,null]\n'
    )
    claimed = claim_spill_files(spill_path)
    try:
        (row,) = claimed[0].read(10)
    finally:
        for spill in claimed:
            spill.close()
    assert row.features is None
    assert row.external_customer_id == "c1"
