"""The rows a compiled forest must score as its estimator does, and the file that keeps them.

The probe set is built at train time from the training rows, for any schema: every row, then
some of them with each feature missing in turn, with every value missing, and with categorical
codes no vocabulary reaches. `parity.npz` stores the rows with the estimator's probabilities on
them, so a load checks the forest without the training data, the estimator or scikit-learn.
Artifacts made before it stored only the probabilities (`parity.npy`), on the shipped Telco
rows, which `telco_parity_rows` rebuilds.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from churn_mlops.model.features import FeatureEncoder, FloatMatrix
from churn_mlops.model.npz_file import npz_bytes, read_npz

PARITY_FILE = "parity.npz"
LEGACY_PARITY_FILE = "parity.npy"
# Rows that the probe set varies (missing values, unseen categories).
_VARIED_ROWS = 32


class ParityFileError(ValueError):
    """parity.npz is unreadable or does not hold rows and their probabilities."""


def parity_rows(encoder: FeatureEncoder, rows: FloatMatrix) -> FloatMatrix:
    """`rows` (encoded), then variants of some of them: each feature missing, every feature
    missing, and categorical codes out of every vocabulary (99, -1, 0.5)."""
    some = rows[:: max(1, len(rows) // _VARIED_ROWS)][:_VARIED_ROWS]
    categorical = [i for i, is_categorical in enumerate(encoder.categorical_mask) if is_categorical]
    width = rows.shape[1]
    changes: list[tuple[list[int], float]] = [([i], np.nan) for i in range(width)]
    changes.append((list(range(width)), np.nan))
    if categorical:
        changes += [(categorical, 99.0), (categorical, -1.0), (categorical, 0.5)]
    varied = [rows]
    for columns, value in changes:
        variant = some.copy()
        variant[:, columns] = value
        varied.append(variant)
    return np.concatenate(varied).astype(np.float32, copy=False)


def parity_bytes(rows: FloatMatrix, probabilities: npt.NDArray[np.float64]) -> bytes:
    return npz_bytes({"rows": rows, "probabilities": probabilities})


def read_parity(data: bytes) -> tuple[FloatMatrix, npt.NDArray[np.float64]]:
    """(rows, the estimator's probabilities on them) of a parity.npz."""
    arrays = read_npz(
        data, {"rows": np.float32, "probabilities": np.float64}, "parity file", ParityFileError
    )
    rows, probabilities = arrays["rows"], arrays["probabilities"]
    if rows.ndim != 2 or probabilities.shape != (rows.shape[0],):
        raise ParityFileError("the parity file's rows and probabilities do not match")
    return rows, probabilities


def telco_parity_rows(encoder: FeatureEncoder) -> FloatMatrix:
    """The probe rows of an artifact made before parity.npz: the shipped dataset's customers
    and the variants of them that the old probe set had."""
    rows = encoder.encode_columns(_telco_columns())
    some = rows[:: max(1, len(rows) // _VARIED_ROWS)][:_VARIED_ROWS]
    names = encoder.feature_names
    categorical = [i for i, name in enumerate(names) if name in encoder.vocabularies]
    total_charges = names.index("total_charges")
    varied = [rows]
    for columns, value in [
        ([total_charges], np.nan),
        *(([i], np.nan) for i in categorical),
        (list(range(len(names))), np.nan),
        (categorical, 99.0),
        (categorical, -1.0),
        (categorical, 0.5),
    ]:
        variant = some.copy()
        variant[:, columns] = value
        varied.append(variant)
    return np.concatenate(varied)


@cache
def _telco_columns() -> dict[str, list[object]]:
    from churn_mlops.data import load_telco_csv

    return load_telco_csv().columns
