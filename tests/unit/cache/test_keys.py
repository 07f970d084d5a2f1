"""PredictionKeys: the row's bytes in L1; namespace, version and a digest of the canonical row
in Redis."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from churn_mlops.cache.keys import PredictionKeys, canonical_bytes, canonical_rows
from churn_mlops.model.features import FloatMatrix


def _rows(count: int = 5, seed: int = 0) -> FloatMatrix:
    return np.random.default_rng(seed).random((count, 19), dtype=np.float32)


def _with_bits(row: FloatMatrix, column: int, bits: int) -> FloatMatrix:
    changed = row.copy()
    changed.view(np.uint32)[0, column] = bits
    return changed


def test_cache_key_is_the_rows_float32_bytes() -> None:
    row = _rows(1)
    keys = PredictionKeys("churn:pred", "v48d7983e37a5")
    assert keys.key_for_row(row) == row.tobytes()
    assert keys.key_for_row(row[0]) == row.tobytes()


def test_redis_key_is_prefix_version_and_32_hex_digest() -> None:
    keys = PredictionKeys("churn:pred", "v48d7983e37a5")
    redis_key = keys.redis_key(keys.key_for_row(_rows(1)))
    assert re.fullmatch(r"churn:pred:v48d7983e37a5:[0-9a-f]{32}", redis_key)
    assert keys.redis_key_for_row(_rows(1)) == redis_key


def test_equal_rows_share_a_key_and_different_rows_do_not() -> None:
    keys = PredictionKeys("p", "v1")
    row = _rows(1)
    other = row.copy()
    other[0, 4] += 1
    assert keys.key_for_row(row) == keys.key_for_row(row.copy())
    assert keys.key_for_row(row) != keys.key_for_row(other)
    assert keys.redis_key_for_row(row) == keys.redis_key_for_row(row.copy())
    assert keys.redis_key_for_row(row) != keys.redis_key_for_row(other)


def test_every_nan_bit_pattern_shares_one_redis_key() -> None:
    keys = PredictionKeys("p", "v1")
    row = _rows(1)
    nans = [0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7F800001, 0xFFFFFFFF]
    variants = {keys.redis_key_for_row(_with_bits(row, 18, bits)) for bits in nans}
    assert len(variants) == 1
    assert variants != {keys.redis_key_for_row(row)}


def test_negative_zero_shares_the_redis_key_of_zero() -> None:
    keys = PredictionKeys("p", "v1")
    row = _rows(1)
    assert keys.redis_key_for_row(_with_bits(row, 3, 0x80000000)) == keys.redis_key_for_row(
        _with_bits(row, 3, 0x00000000)
    )


def test_canonical_bytes_rewrites_only_rows_that_need_it() -> None:
    row = _rows(1)
    assert canonical_bytes(row.tobytes()) == row.tobytes()
    odd = _with_bits(_with_bits(row, 3, 0x80000000), 18, 0xFFC00001)
    assert canonical_bytes(odd.tobytes()) == canonical_rows(odd).tobytes()
    assert canonical_bytes(odd.tobytes()) != odd.tobytes()


def test_canonical_rows_leaves_the_input_untouched() -> None:
    row = _with_bits(_rows(1), 0, 0x80000000)
    before = row.tobytes()
    canonical_rows(row)
    assert row.tobytes() == before


def test_keys_for_rows_matches_key_for_row_row_by_row() -> None:
    keys = PredictionKeys("p", "v1")
    rows = _rows(50)
    rows[7, 18] = np.nan
    rows[9, 2] = -0.0
    assert keys.keys_for_rows(rows) == [keys.key_for_row(rows[i : i + 1]) for i in range(50)]


@pytest.mark.parametrize("value", [np.inf, -np.inf, 3e38, -3e38, -1e-39, 1e-39, np.nan, -0.0])
def test_redis_key_hashes_the_canonical_bytes(value: float) -> None:
    keys = PredictionKeys("p", "v1")
    row = _rows(1)
    row[0, 5] = value
    expected = hashlib.blake2b(canonical_rows(row).tobytes(), digest_size=16).hexdigest()
    assert keys.redis_key_for_row(row) == keys.namespace + expected
    assert [keys.redis_key(key) for key in keys.keys_for_rows(row)] == [keys.redis_key_for_row(row)]


def test_non_contiguous_one_dimensional_and_float64_rows_key_like_their_copies() -> None:
    keys = PredictionKeys("p", "v1")
    rows = np.asfortranarray(_rows(4))
    assert keys.keys_for_rows(rows) == keys.keys_for_rows(np.ascontiguousarray(rows))
    assert keys.key_for_row(rows[2]) == keys.key_for_row(rows[2:3])
    assert keys.key_for_row(rows[2:3]) == np.ascontiguousarray(rows[2:3]).tobytes()
    assert keys.key_for_row(rows[2:3].astype(np.float64)) == keys.key_for_row(rows[2:3])


def test_model_version_and_prefix_change_the_redis_key_only() -> None:
    row = _rows(1)
    base = PredictionKeys("p", "v1").redis_key_for_row(row)
    assert PredictionKeys("p", "v2").redis_key_for_row(row) != base
    assert PredictionKeys("q", "v1").redis_key_for_row(row) != base
    assert (
        base.rsplit(":", 1)[1] == PredictionKeys("q", "v2").redis_key_for_row(row).rsplit(":", 1)[1]
    )
    assert PredictionKeys("p", "v2").key_for_row(row) == PredictionKeys("p", "v1").key_for_row(row)


@pytest.mark.parametrize("shape", [(2, 19), (0,), (1, 0), (1, 1, 19)])
def test_key_for_row_refuses_anything_but_one_row(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="one non-empty row"):
        PredictionKeys("p", "v1").key_for_row(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("version", ["", "v:1", "v 1", "v*"])
def test_model_version_that_could_break_the_namespace_is_refused(version: str) -> None:
    with pytest.raises(ValueError, match="model version"):
        PredictionKeys("p", version)


@pytest.mark.parametrize("prefix", ["", "a b", "a\n"])
def test_blank_or_spaced_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        PredictionKeys(prefix, "v1")


def test_match_pattern_covers_exactly_this_versions_keys() -> None:
    keys = PredictionKeys("churn:p*", "v1")
    assert keys.match_pattern == r"churn:p\*:v1:" + "?" * 32
    assert keys.owns(keys.redis_key_for_row(_rows(1)))
    assert not keys.owns(PredictionKeys("churn:p*:v1", "x").redis_key_for_row(_rows(1)))
    assert not keys.owns(PredictionKeys("churn:p*", "v2").redis_key_for_row(_rows(1)))
