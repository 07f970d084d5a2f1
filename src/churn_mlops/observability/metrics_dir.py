"""The directory that the workers of one `churn-mlops serve` share their metrics through.

prometheus-client's multiprocess mode keeps each worker's metrics in memory-mapped files under
`PROMETHEUS_MULTIPROC_DIR`; `serve` sets it up empty before the workers start, and whichever
worker answers a scrape reads every file there. This module creates, empties and cleans it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import multiprocess, values

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TEMP_DIR_PREFIX = "churn-metrics-"


def multiprocess_dir() -> Path | None:
    """The multiprocess directory, if this process writes its metrics there.

    Both conditions matter: prometheus-client picks its value class when it is first imported,
    so a directory set in the environment after that import is not used by this process.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(path)


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create `path` empty (files of an earlier run would add to this run's counters) and point
    `PROMETHEUS_MULTIPROC_DIR` at it, for the worker processes started after this call."""
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


@contextlib.contextmanager
def shared_metrics_dir(path: Path | None, *, enabled: bool = True) -> Iterator[Path | None]:
    """The workers' shared metrics directory for the duration of a server run: `path` emptied,
    or a new temporary directory removed afterwards; nothing when metrics are off."""
    if not enabled:
        yield None
        return
    if path is not None:
        yield prepare_multiprocess_dir(path)
        return
    remove_abandoned_dirs(Path(tempfile.gettempdir()))
    created = Path(tempfile.mkdtemp(prefix=f"{TEMP_DIR_PREFIX}{os.getpid()}-"))
    try:
        yield prepare_multiprocess_dir(created)
    finally:
        shutil.rmtree(created, ignore_errors=True)


def remove_abandoned_dirs(parent: Path) -> list[Path]:
    """Remove the temporary metrics directories of `serve` runs whose process is gone (killed
    before it could clean up): their names carry its pid. Returns what was removed."""
    removed = []
    for entry in parent.glob(f"{TEMP_DIR_PREFIX}*-*"):
        pid_text = entry.name.removeprefix(TEMP_DIR_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or not entry.is_dir():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        except PermissionError:
            pass  # alive, someone else's
    return removed


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def remove_dead_workers(path: Path) -> list[int]:
    """Drop the live-gauge files of processes that no longer exist (a crashed worker never
    removed its own); returns their pids."""
    dead = set()
    for entry in path.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:
            pass  # alive, someone else's
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)
