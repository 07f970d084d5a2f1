"""The spill files: where rows go when memory is full or the database is away, replayed later.

Safe to share between the workers of one host and to replay after a crash: appends hold an
exclusive `flock` and check that the path still names the file they opened; a replay first
renames the live file to `<path>.replay-<random>` under that lock (later spills start a new
file), then holds a non-blocking `flock` on the renamed file while it inserts its rows chunk by
chunk, and unlinks it only when every chunk is in the database. A crash mid-replay leaves the
renamed file, which the next replay (at start-up or after an outage) takes up again; rows that
already arrived are skipped by their ids.

Every function here blocks: the writer calls them in a worker thread.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from churn_mlops.db.prediction_log.ids import LoggedPrediction

logger = logging.getLogger("churn_mlops.db.prediction_log")

_REPLAY_INFIX = ".replay-"


def _encode(rows: Iterable[LoggedPrediction]) -> bytes:
    # A leading newline ends a line a crash may have torn, so only that line is lost.
    return b"\n" + b"".join(
        orjson.dumps(
            [
                row.id,
                row.external_customer_id,
                row.model_version,
                row.probability,
                row.will_churn,
                row.cached,
                row.latency_ms,
                row.created_at,
                row.challenger_version,
                row.challenger_probability,
                None if row.features is None else base64.b64encode(row.features).decode(),
            ]
        )
        + b"\n"
        for row in rows
    )


def _decode(line: bytes) -> LoggedPrediction:
    # A line spilled before the challenger columns existed has 8 values, one spilled before
    # the features column 10: the missing ones default to None. Features are base64 text.
    values = orjson.loads(line)
    if len(values) > 10 and values[10] is not None:
        values[10] = base64.b64decode(values[10], validate=True)
    return LoggedPrediction(uuid.UUID(hex=values[0]).hex, *values[1:])


@contextlib.contextmanager
def _locked_live_file(path: Path) -> Iterator[int]:
    """The spill file at `path`, opened for appending and exclusively locked; retried when a
    replay renamed it between the open and the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if current.st_ino == os.fstat(fd).st_ino:
                yield fd
                return
        finally:
            os.close(fd)


def append_spill(path: Path, rows: Sequence[LoggedPrediction]) -> None:
    """Append `rows` to the spill file with one write and an fsync."""
    data = memoryview(_encode(rows))
    with _locked_live_file(path) as fd:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)


def spill_files_exist(path: Path) -> bool:
    """Whether the live spill file holds rows or a replay file is left next to it."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > 0:
            return True
    return any(path.parent.glob(path.name + _REPLAY_INFIX + "*"))


class ClaimedSpill:
    """A replay file this process holds the lock of, read in chunks."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._file = os.fdopen(os.dup(fd), "rb")
        self.rows_read = 0
        self.unreadable = 0
        self.closed = False

    def read(self, count: int) -> list[LoggedPrediction]:
        rows: list[LoggedPrediction] = []
        while len(rows) < count:
            line = self._file.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                rows.append(_decode(line))
            except (ValueError, TypeError, IndexError):
                self.unreadable += 1
                logger.warning("prediction log: skipping an unreadable line of %s", self.path)
        self.rows_read += len(rows)
        return rows

    def finish(self) -> None:
        """Every row is in the database: remove the file (still holding its lock)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._file.close()
            os.close(self._fd)


def claim_spill_files(path: Path) -> list[ClaimedSpill]:
    """Move the live spill file aside and lock every replay file no other process holds."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > 0:
            with _locked_live_file(path) as _:
                target = path.with_name(path.name + _REPLAY_INFIX + uuid.uuid4().hex[:12])
                os.rename(path, target)
    claimed = []
    for candidate in sorted(path.parent.glob(path.name + _REPLAY_INFIX + "*")):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                continue  # another worker is replaying it
            raise
        if os.fstat(fd).st_nlink == 0:  # replayed and removed while we waited
            os.close(fd)
            continue
        claimed.append(ClaimedSpill(candidate, fd))
    return claimed
