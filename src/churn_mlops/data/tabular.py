"""Training files as columns of raw cells: CSV (the standard library) or Parquet (pyarrow).

A CSV cell is its text, stripped, with an empty cell read as missing (None); a Parquet cell is
its Python value (None for null). Nothing is interpreted here: the schema decides what a cell
means, and `dataset.py` parses it with errors that name the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A training file cannot be read, or holds a value its schema refuses; says where."""


PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class RawTable:
    """A file's columns by header, each a list of cells, and the file's sha256."""

    path: Path
    columns: dict[str, list[Any]]
    sha256: str
    typed: bool
    """True for Parquet (cells are typed values), False for CSV (cells are text)."""

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def line(self, index: int) -> str:
        """How an error names row `index`: a CSV's line (its header is line 1), else the row."""
        return f"row {index + 1}" if self.typed else f"line {index + 2}"

    def require(self, names: Sequence[str]) -> None:
        if missing := sorted(set(names) - set(self.columns)):
            raise DatasetError(f"{self.path}: missing columns {', '.join(missing)}")


def read_table(path: Path) -> RawTable:
    """Read a CSV or Parquet file (by its suffix); DatasetError if it cannot be read."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path)
    return _read_csv(path)


def _read_csv(path: Path) -> RawTable:
    payload = path.read_bytes()
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        where = f"{error.reason} at byte {error.start}"
        raise DatasetError(f"{path}: not UTF-8 text ({where})") from None
    reader = csv.reader(text.splitlines())
    header = [name.strip() for name in next(reader, [])]
    if not header or not any(header):
        raise DatasetError(f"{path}: no header line")
    if duplicated := sorted({n for n in header if header.count(n) > 1}):
        raise DatasetError(f"{path}: columns named twice: {', '.join(duplicated)}")
    columns: dict[str, list[Any]] = {name: [] for name in header}
    lists = list(columns.values())
    for line, record in enumerate(reader, start=2):
        if not record:
            continue
        if len(record) != len(header):
            raise DatasetError(
                f"line {line}: {len(record)} cells where the header has {len(header)}"
            )
        for cells, raw in zip(lists, record, strict=True):
            cell = raw.strip()
            cells.append(cell or None)
    return RawTable(path, columns, hashlib.sha256(payload).hexdigest(), typed=False)


def _read_parquet(path: Path) -> RawTable:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow: pip install 'churn-mlops[parquet]'"
        ) from None
    payload = path.read_bytes()
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a file it cannot read
        raise DatasetError(f"{path}: not a Parquet file pyarrow can read: {error}") from None
    columns = {str(name): table.column(name).to_pylist() for name in table.column_names}
    return RawTable(path, columns, hashlib.sha256(payload).hexdigest(), typed=True)
