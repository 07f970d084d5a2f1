"""The artifact's array files (the compiled forest, the explainer): `.npz` archives written so
that the same arrays always give the same bytes (the artifact's version hashes them), read back
without pickle and with every array's dtype checked, since the kernels that use them trust them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

# A fixed timestamp for every member: zip stores the time it is written at otherwise.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The arrays as an uncompressed `.npz` whose bytes depend on the arrays alone."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_npz(
    data: bytes, dtypes: Mapping[str, np.dtype[Any] | type], what: str, error: type[Exception]
) -> dict[str, npt.NDArray[Any]]:
    """The arrays of `data`, exactly the names of `dtypes`, each of its dtype; anything else
    raises `error` with a message about `what` ("forest file", "explainer file")."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as failure:
        raise error(f"unreadable {what}: {failure}") from None
    if set(arrays) != set(dtypes):
        raise error(f"the {what} does not hold the expected arrays")
    for name, dtype in dtypes.items():
        if arrays[name].dtype != dtype:
            raise error(f"array {name} has dtype {arrays[name].dtype}")
    return arrays
