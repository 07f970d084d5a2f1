"""The compact form of a scored row's features in the prediction log (`CHURN_LOG_FEATURES`).

A row is stored as the model saw it: the encoder's float32 row (categories as their codes in
the model's vocabulary, NaN for a missing value or an unseen category), little-endian, 4 bytes
per feature (76 bytes for the 19 features), in a nullable `predictions.features` BLOB/bytea.

Why this form rather than the request's JSON values: the row already exists on the request path
(the pipeline encoded it to score it), so logging it is one `tobytes()` (about 0.1 us) with no
second encoding; it is 76 bytes against about 420 for the JSON features; and it is exactly what
the drift report bins, with the same float32 rounding the model applied. Reading back is
`numpy.frombuffer`: the same values bit for bit, NaN included. What it does not keep is the
text of an unseen category (it becomes NaN, as it does for the model); the codes mean what the
vocabulary of the row's `model_version` says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

FEATURE_DTYPE = np.dtype("<f4")
"""The stored element type: float32, little-endian on every machine."""


def encode_row(row: npt.NDArray[np.float32]) -> bytes:
    """One encoded row (shape (n,) or (1, n)) as stored bytes."""
    return np.ascontiguousarray(row, dtype=FEATURE_DTYPE).tobytes()


def encode_rows(rows: npt.NDArray[np.float32]) -> list[bytes]:
    """Each row of an encoded (n_rows, n_features) matrix as stored bytes: one copy of the
    matrix, then a slice per row."""
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-d matrix of encoded rows, got shape {rows.shape}")
    data = np.ascontiguousarray(rows, dtype=FEATURE_DTYPE).tobytes()
    width = rows.shape[1] * FEATURE_DTYPE.itemsize
    return [data[start : start + width] for start in range(0, len(data), width)]


def decode_rows(blobs: Iterable[bytes], n_features: int) -> npt.NDArray[np.float32]:
    """Stored rows back into an (n_rows, n_features) float32 matrix; a blob of another width
    (a row logged for another feature list) is refused."""
    width = n_features * FEATURE_DTYPE.itemsize
    chunks: Sequence[bytes] = blobs if isinstance(blobs, Sequence) else list(blobs)
    for blob in chunks:
        if len(blob) != width:
            raise ValueError(
                f"a logged feature row has {len(blob)} bytes, not {width} "
                f"({n_features} float32 features)"
            )
    joined = b"".join(bytes(blob) for blob in chunks)
    matrix = np.frombuffer(joined, dtype=FEATURE_DTYPE).reshape(len(chunks), n_features)
    return matrix.astype(np.float32)
