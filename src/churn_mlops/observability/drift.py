"""Live drift: what each serving worker scores, binned against the model's reference profile
over a sliding window, and the population stability index of every feature and of the
predicted probability, exported as Prometheus gauges merged across workers.

Design, and why:

- **The request path only appends.** The model runner's score function is wrapped
  (`DriftMonitor.observing`): after a model call it appends the call's rows and probabilities
  (arrays the call made anyway, never written again) to a thread-safe deque, about 0.1 us a
  call. Each metrics refresh (every `CHURN_METRICS_REFRESH_SECONDS`, and before a scrape in
  the worker that answers it) folds what was appended into the window in one compiled pass
  over the concatenated rows (`ReferenceProfile.add_counts`, about 0.2 us a row, off the
  request path). A deque that reaches `MAX_PENDING_CALLS` is folded by the call that fills it,
  so memory stays bounded if refreshes stall.
- **A ring of time buckets.** The window (`CHURN_DRIFT_WINDOW_SECONDS`, an hour by default) is
  `BUCKETS` buckets of counts per bin; a fold adds to the bucket of the present moment and
  clears the buckets that have slid out of the window. Rows are dated when folded, at most one
  refresh interval late. The counts of the window are the sum of the buckets.
- **Merged counts, not merged indices.** PSI is not additive: the PSI of two workers' traffic
  is not the sum, mean or maximum of their PSIs. Each refresh writes the worker's window counts
  (per model version) to `drift-counts-<pid>.json` in the workers' shared metrics directory
  (atomically, by rename), and the worker answering a scrape adds up the files of the live
  workers (a dead worker's file is removed) and computes PSI from the sums, in a Prometheus
  collector. Each version's profile is written there once too, so any worker can judge any
  version's counts. Without a shared directory (one process, tests) the window is read directly.
- **Per model version.** Bins belong to a version's profile, so counts are kept and exported
  per version (`version` label): after a swap, the old version's window ages out while the new
  one fills. A model whose artifact has no profile (trained before profiles existed) is served
  without drift monitoring, and the worker logs that once.

PSI of a small sample is noisy (about (bins - 1) / rows for an unchanged population), so the
alert rules also ask for enough rows in the window (`churn_drift_window_rows`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from churn_mlops.model.drift_profile import ReferenceProfile
from churn_mlops.model.features import FloatMatrix

logger = logging.getLogger("churn_mlops.drift")

BUCKETS = 60
"""Time buckets per window: a one-hour window slides by a minute."""
MAX_PENDING_CALLS = 8192
"""Model calls appended before the call that reaches this many folds them itself."""
COUNTS_PREFIX = "drift-counts-"
PROFILE_PREFIX = "drift-profile-"

FEATURE_PSI = "churn_feature_psi"
PREDICTION_PSI = "churn_prediction_psi"
WINDOW_ROWS = "churn_drift_window_rows"

Score = Callable[[FloatMatrix], npt.NDArray[np.float64]]
Counts = npt.NDArray[np.int64]


class DriftWindow:
    """One model version's sliding-window bin counts in one worker."""

    def __init__(
        self,
        profile: ReferenceProfile,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self._bucket_seconds = window_seconds / BUCKETS
        self._clock = clock
        self._counts = np.zeros((BUCKETS, profile.n_bins), dtype=np.int64)
        self._bucket = self._bucket_at(clock())
        self._pending: deque[tuple[FloatMatrix, npt.NDArray[np.float64]]] = deque()
        self._lock = threading.Lock()
        # Load (or compile) the counter now, not at the first fold on the event loop.
        missing = np.full((1, len(profile.features)), np.nan, dtype=np.float32)
        profile.add_counts(np.zeros_like(self._counts[:1]), missing, np.zeros(1))

    def observe(self, rows: FloatMatrix, probabilities: npt.NDArray[np.float64]) -> None:
        """The hot path: remember a model call's rows and probabilities for the next fold."""
        pending = self._pending
        pending.append((rows, probabilities))
        if len(pending) >= MAX_PENDING_CALLS:
            self.fold()

    def fold(self) -> None:
        """Count what was observed since the last fold into the present bucket; clear the
        buckets that left the window."""
        with self._lock:
            slot = self._advance()
            taken = []
            pending = self._pending
            while pending:
                taken.append(pending.popleft())
            if not taken:
                return
            if len(taken) == 1:
                rows, probabilities = taken[0]
            else:
                rows = np.concatenate([item[0] for item in taken])
                probabilities = np.concatenate([item[1] for item in taken])
            self.profile.add_counts(self._counts, rows, probabilities, slot)

    def counts(self) -> Counts:
        """The window's counts per bin (every feature's bins, then the prediction's)."""
        self.fold()
        with self._lock:
            summed: Counts = self._counts.sum(axis=0)
        return summed

    def _bucket_at(self, now: float) -> int:
        return int(now // self._bucket_seconds)

    def _advance(self) -> int:
        """Move to the present bucket, zeroing those passed over; its slot in the ring."""
        bucket = self._bucket_at(self._clock())
        passed = bucket - self._bucket
        if passed > 0:
            for step in range(1, min(passed, BUCKETS) + 1):
                self._counts[(self._bucket + step) % BUCKETS] = 0
            self._bucket = bucket
        return self._bucket % BUCKETS


class DriftMonitor:
    """Every model version's window in this worker, their publication to the workers' shared
    directory, and the collector that exports PSI of the merged counts."""

    def __init__(
        self,
        window_seconds: float,
        directory: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        pid: int | None = None,
    ) -> None:
        self.window_seconds = window_seconds
        self.directory = directory
        self._clock = clock
        self._windows: dict[str, DriftWindow] = {}
        self._profiles: dict[str, ReferenceProfile] = {}
        self._without_profile: set[str] = set()
        self._published: bytes | None = None
        self._closed = False
        self._pid = os.getpid() if pid is None else pid
        """Names this worker's counts file (a test plays two workers in one process)."""

    def observing(self, version: str, profile: ReferenceProfile | None, score: Score) -> Score:
        """`score`, also counting what it scores into `version`'s window; `score` itself when
        the model has no reference profile."""
        if profile is None:
            if version not in self._without_profile:
                self._without_profile.add(version)
                logger.warning(
                    "model %s has no drift profile (trained before drift_profile.json existed): "
                    "drift monitoring is off while it serves; retrain it to monitor drift",
                    version,
                )
            return score
        window = self._windows.get(version)
        if window is None:
            window = self._windows[version] = DriftWindow(profile, self.window_seconds, self._clock)
            self._profiles[version] = profile
            self._publish_profile(version, profile)
        observe = window.observe

        def scored(rows: FloatMatrix) -> npt.NDArray[np.float64]:
            probabilities = score(rows)
            observe(rows, probabilities)
            return probabilities

        return scored

    # --- refresh: fold, publish ---------------------------------------------------------------

    def window_counts(self) -> dict[str, Counts]:
        """This worker's window counts per version (versions with rows in the window)."""
        counts = {version: window.counts() for version, window in self._windows.items()}
        return {version: flat for version, flat in counts.items() if flat.any()}

    def refresh(self) -> None:
        """Fold every window and publish this worker's counts for the other workers."""
        if self._closed:
            return
        counts = self.window_counts()
        if self.directory is None:
            return
        document = json.dumps(
            {version: flat.tolist() for version, flat in counts.items()}, sort_keys=True
        ).encode()
        if document != self._published:
            _write_atomically(self.directory / f"{COUNTS_PREFIX}{self._pid}.json", document)
            self._published = document

    def close(self) -> None:
        """This worker's counts leave the merged window."""
        self._closed = True
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{COUNTS_PREFIX}{self._pid}.json").unlink()

    # --- scrape: merge, judge ----------------------------------------------------------------

    def merged_counts(self) -> dict[str, Counts]:
        """The window counts of every live worker, summed per version."""
        own = self.window_counts()
        if self.directory is None:
            return own
        merged: dict[str, Counts] = {version: flat.copy() for version, flat in own.items()}
        for pid, path in _count_files(self.directory):
            if pid == self._pid:
                continue
            if not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            try:
                document = json.loads(path.read_bytes())
            except (FileNotFoundError, ValueError):
                continue  # a worker that just stopped; a rename makes partial files impossible
            for version, values in document.items():
                flat = np.asarray(values, dtype=np.int64)
                if version in merged and merged[version].shape == flat.shape:
                    merged[version] += flat
                elif version not in merged:
                    merged[version] = flat
        return merged

    def profile(self, version: str) -> ReferenceProfile | None:
        """`version`'s reference profile: this worker's, or the one another worker published."""
        profile = self._profiles.get(version)
        if profile is None and self.directory is not None:
            path = self.directory / f"{PROFILE_PREFIX}{version}.json"
            with contextlib.suppress(OSError, ValueError):
                profile = self._profiles[version] = ReferenceProfile.from_json(path.read_bytes())
        return profile

    def _publish_profile(self, version: str, profile: ReferenceProfile) -> None:
        if self.directory is not None:
            path = self.directory / f"{PROFILE_PREFIX}{version}.json"
            if not path.exists():
                _write_atomically(path, profile.to_json())

    def collector(self) -> DriftCollector:
        return DriftCollector(self)


class DriftCollector(Collector):
    """Exports, at scrape time, PSI of the merged window counts of every version."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self._monitor = monitor

    def describe(self) -> list[GaugeMetricFamily]:
        return list(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        feature_psi, prediction_psi, window_rows = _families()
        for version, flat in sorted(self._monitor.merged_counts().items()):
            profile = self._monitor.profile(version)
            if profile is None or flat.shape != (profile.n_bins,):
                continue
            features, prediction = profile.psi(flat)
            for name, value in features.items():
                feature_psi.add_metric([version, name], value)
            prediction_psi.add_metric([version], prediction)
            window_rows.add_metric([version], float(profile.split_counts(flat)[-1].sum()))
        yield from (feature_psi, prediction_psi, window_rows)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            FEATURE_PSI,
            "Population stability index of each feature over the drift window, against the "
            "model version's training rows (all workers' rows together).",
            labels=["version", "feature"],
        ),
        GaugeMetricFamily(
            PREDICTION_PSI,
            "Population stability index of the predicted probabilities over the drift window, "
            "against the model version's predictions on its training rows.",
            labels=["version"],
        ),
        GaugeMetricFamily(
            WINDOW_ROWS,
            "Rows scored within the drift window by all workers, by model version.",
            labels=["version"],
        ),
    )


def _count_files(directory: Path) -> Iterator[tuple[int, Path]]:
    for path in directory.glob(f"{COUNTS_PREFIX}*.json"):
        pid = path.name.removeprefix(COUNTS_PREFIX).removesuffix(".json")
        if pid.isdigit():
            yield int(pid), path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_bytes(data)
    os.replace(staging, path)
