"""numba kernels for the per-element loops of binary V2 tensors: splitting a BYTES block into
its elements and looking each element up among a feature's categories, without a Python object
per element. Everything else in tensor decoding is whole-array numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from churn_mlops.core.native import kernel

Offsets = npt.NDArray[np.int64]
Block = npt.NDArray[np.uint8]


@kernel("Tuple((i8[::1], i8[::1], i8))(u1[::1], i8)")
def _split_bytes(block: Any, count: int) -> Any:  # pragma: no cover - compiled
    starts = np.empty(count, np.int64)
    lengths = np.empty(count, np.int64)
    size = block.shape[0]
    position = np.int64(0)
    for i in range(count):
        if position + 4 > size:
            return starts, lengths, i
        length = (
            np.int64(block[position])
            | (np.int64(block[position + 1]) << 8)
            | (np.int64(block[position + 2]) << 16)
            | (np.int64(block[position + 3]) << 24)
        )
        position += 4
        if position + length > size:
            return starts, lengths, i
        starts[i] = position
        lengths[i] = length
        position += length
    if position != size:
        return starts, lengths, count
    return starts, lengths, -1


@kernel("void(u1[::1], i8[::1], i8[::1], u1[::1], i8[::1], i8[::1], f4[::1], f4[::1], b1[::1])")
def _lookup_each(
    block: Any,
    starts: Any,
    lengths: Any,
    vocabulary: Any,
    vocabulary_starts: Any,
    vocabulary_lengths: Any,
    codes: Any,
    out: Any,
    found: Any,
) -> None:  # pragma: no cover - compiled
    for i in range(starts.shape[0]):
        start = starts[i]
        length = lengths[i]
        out[i] = np.nan
        found[i] = False
        for j in range(vocabulary_starts.shape[0]):
            if vocabulary_lengths[j] != length:
                continue
            at = vocabulary_starts[j]
            same = True
            for k in range(length):
                if block[start + k] != vocabulary[at + k]:
                    same = False
                    break
            if same:
                out[i] = codes[j]
                found[i] = True
                break


def split_bytes(block: Block, count: int) -> tuple[Offsets, Offsets, int]:
    """(start, length) of each of `count` BYTES elements (a 4-byte little-endian length, then
    the bytes) and -1; or, as the third value, the index of the first element that runs past
    the block, or `count` when bytes are left over after the last element."""
    starts, lengths, bad = _split_bytes(np.ascontiguousarray(block, dtype=np.uint8), int(count))
    return starts, lengths, int(bad)


class CategoryTable:
    """A feature's accepted values as UTF-8, each with the float32 code the encoder gives it."""

    __slots__ = ("codes", "lengths", "starts", "values", "vocabulary")

    def __init__(self, values: Sequence[str], codes: Sequence[float]) -> None:
        self.values = tuple(values)
        encoded = [value.encode() for value in values]
        self.vocabulary = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
        self.lengths = np.array([len(value) for value in encoded], dtype=np.int64)
        self.starts = (np.cumsum(self.lengths) - self.lengths).astype(np.int64)
        self.codes = np.asarray(codes, dtype=np.float32)

    def lookup(
        self, block: Block, starts: Offsets, lengths: Offsets
    ) -> tuple[npt.NDArray[np.float32], int]:
        """The code of every element, and -1; or the index of the first unknown element."""
        out, found = self.lookup_each(block, starts, lengths)
        unknown = np.flatnonzero(~found)
        return out, int(unknown[0]) if len(unknown) else -1

    def lookup_each(
        self, block: Block, starts: Offsets, lengths: Offsets
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The code of every element (NaN for an unknown one), and which elements are known."""
        out = np.empty(len(starts), dtype=np.float32)
        found = np.empty(len(starts), dtype=np.bool_)
        _lookup_each(
            np.ascontiguousarray(block, dtype=np.uint8),
            np.ascontiguousarray(starts, dtype=np.int64),
            np.ascontiguousarray(lengths, dtype=np.int64),
            self.vocabulary, self.starts, self.lengths, self.codes, out, found,
        )  # fmt: skip
        return out, found


def warm_up() -> None:
    """Load the kernels before the first request (numba's JIT compiles them, or loads them
    from its cache, when the compiled extension is not built)."""
    table = CategoryTable(["No", "Yes"], [0.0, 1.0])
    block = np.frombuffer(b"\x03\x00\x00\x00Yes", dtype=np.uint8)
    starts, lengths, _ = split_bytes(block, 1)
    table.lookup(block, starts, lengths)
