"""`churn-mlops drift report`: what the model scored lately, against what it was trained on.

The rows come from the configured database (the embedded SQLite file or PostgreSQL):

- `log`: the prediction log's rows since then that carry their features (`CHURN_LOG_FEATURES`),
  logged by the report's model version (a row's encoded categories mean what that version's
  vocabulary says), with the probability the service answered;
- `customers`: the stored customers created or updated since then, encoded with the model's
  encoder and scored by the model for the prediction distribution.

Each feature's encoded column is counted into the bins of the model's reference profile
(`model.drift_profile`, stored in the artifact at train time) and compared with the training
proportions by the population stability index, as are the predicted probabilities. Statuses
follow the usual PSI reading: below 0.1 ok, 0.1 to 0.2 watch, above 0.2 drift. The HTML is
`drift_html.render_report`'s.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from churn_mlops.db.engine import create_engine
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.db.prediction_log.features import decode_rows
from churn_mlops.db.stored_features import MissingStoredFeatures, with_defaults
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.drift_profile import FeatureBins, ReferenceProfile
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import ChurnPredictor

Source = Literal["log", "customers", "both"]
Status = Literal["ok", "watch", "drift"]
WATCH_PSI, DRIFT_PSI = 0.1, 0.2
READ_CHUNK_ROWS = 50_000
# A long window of a busy service is millions of rows: the read may take minutes.
READ_STATEMENT_TIMEOUT_MS = 600_000
Progress = Callable[[str, int, int | None], None]
"""Told `(stage, rows done, rows in all or None)` as the work goes on."""


class DriftReportError(Exception):
    """The report cannot be made: no rows with features, no profile, a bad window; the
    message says what to do."""


def status_of(psi: float) -> Status:
    """ok below 0.1, watch from 0.1 to 0.2, drift above 0.2."""
    if psi > DRIFT_PSI:
        return "drift"
    return "watch" if psi >= WATCH_PSI else "ok"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `12h`, `30m`, `2w` before `now`, or an ISO date or time (UTC unless it says)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DriftReportError(
            f"--since {text!r}: give a duration such as 7d, 12h, 30m or 2w, or an ISO date"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class DriftSample:
    """The encoded rows a report compares, and the probabilities the model gave them."""

    rows: FloatMatrix
    probabilities: npt.NDArray[np.float64]
    logged_rows: int = 0
    """Rows read from the prediction log."""
    customer_rows: int = 0
    """Rows read from the stored customers."""


@dataclass(frozen=True)
class BinnedDrift:
    """One feature's (or the prediction's) bins: training proportions against the sample's."""

    name: str
    kind: str
    labels: tuple[str, ...]
    expected: tuple[float, ...]
    counts: tuple[int, ...]
    psi: float

    @property
    def status(self) -> Status:
        return status_of(self.psi)

    @property
    def actual(self) -> tuple[float, ...]:
        total = sum(self.counts)
        return tuple(count / total if total else 0.0 for count in self.counts)


@dataclass(frozen=True)
class DriftReport:
    """Everything the HTML shows."""

    model_version: str
    since: datetime
    generated_at: datetime
    source: Source
    sample_rows: int
    logged_rows: int
    customer_rows: int
    training_rows: int
    features: tuple[BinnedDrift, ...]
    """Sorted by PSI, largest first."""
    prediction: BinnedDrift

    @property
    def drifted(self) -> list[str]:
        return [feature.name for feature in self.features if feature.status == "drift"]


def short_labels(bins: FeatureBins) -> tuple[str, ...]:
    """The bins' names for a plot: numeric edges to 3 significant digits."""
    if bins.kind == "categorical":
        return bins.labels
    bounds = ("-inf", *(f"{edge:.3g}" for edge in bins.edges), "inf")
    return (*(f"({low}, {high}]" for low, high in itertools.pairwise(bounds)), "missing")


def _binned(bins: FeatureBins, column: npt.NDArray[np.floating[Any]]) -> BinnedDrift:
    counts = bins.bin_counts(column)
    return BinnedDrift(
        bins.name,
        bins.kind,
        short_labels(bins),
        bins.expected,
        tuple(int(count) for count in counts.tolist()),
        bins.psi(counts),
    )


def compare(
    profile: ReferenceProfile,
    sample: DriftSample,
    *,
    model_version: str,
    since: datetime,
    source: Source,
    now: datetime | None = None,
) -> DriftReport:
    """Each feature's PSI and the prediction's, for `sample` against `profile`."""
    features = [_binned(bins, sample.rows[:, index]) for index, bins in enumerate(profile.features)]
    features.sort(key=lambda feature: feature.psi, reverse=True)
    return DriftReport(
        model_version=model_version,
        since=since,
        generated_at=now or datetime.now(UTC),
        source=source,
        sample_rows=len(sample.rows),
        logged_rows=sample.logged_rows,
        customer_rows=sample.customer_rows,
        training_rows=profile.rows,
        features=tuple(features),
        prediction=_binned(profile.prediction, sample.probabilities),
    )


def profile_of(artifact: ModelArtifact) -> ReferenceProfile:
    """The artifact's reference profile, or the error that says how to get one."""
    profile = artifact.drift_profile
    if profile is None:
        raise DriftReportError(
            f"model {artifact.version} has no reference profile (drift_profile.json): it was "
            "trained before drift profiles existed; train it again (`churn-mlops train`) or "
            "pass --model with a newer version"
        )
    return profile


# --- reading the database ---------------------------------------------------------------------


async def _logged(
    engine: AsyncEngine, since: datetime, version: str, width: int, progress: Progress
) -> tuple[FloatMatrix, npt.NDArray[np.float64]]:
    in_window = and_(Prediction.created_at >= since, Prediction.model_version == version)
    async with engine.connect() as connection:
        total, with_features = (
            await connection.execute(
                select(func.count(), func.count(Prediction.features)).where(in_window)
            )
        ).one()
        if not with_features:
            others = (
                await connection.execute(
                    select(Prediction.model_version, func.count(Prediction.features))
                    .where(Prediction.created_at >= since, Prediction.features.is_not(None))
                    .group_by(Prediction.model_version)
                )
            ).all()
            raise _no_features(since, version, int(total), dict(others))
        # Decoded a partition at a time: a million rows are 76 MB as float32, three times
        # that as Python bytes objects.
        parts: list[FloatMatrix] = []
        scores: list[npt.NDArray[np.float64]] = []
        read, expected = 0, int(with_features)
        progress("reading the prediction log", 0, expected)
        result = await connection.stream(
            select(Prediction.features, Prediction.probability).where(
                in_window, Prediction.features.is_not(None)
            )
        )
        async for part in result.partitions(READ_CHUNK_ROWS):
            blobs = [features for features, _ in part if features is not None]
            try:
                parts.append(decode_rows(blobs, width))
            except ValueError as error:
                raise DriftReportError(f"model {version}'s logged features: {error}") from None
            scores.append(np.fromiter((p for _, p in part), dtype=np.float64, count=len(part)))
            read += len(part)
            progress("reading the prediction log", read, expected)
    if not parts:  # removed between the count and the read
        raise _no_features(since, version, 0, {})
    return np.concatenate(parts), np.concatenate(scores)


def _no_features(
    since: datetime, version: str, total: int, others: dict[str, int]
) -> DriftReportError:
    window = f"since {since:%Y-%m-%d %H:%M} UTC"
    reason = (
        f"none of the {total:,} predictions model {version} logged {window} has its features"
        if total
        else f"model {version} logged no prediction {window}"
    )
    hint = "; set CHURN_LOG_FEATURES=true on the service so that the log records them"
    elsewhere = {name: count for name, count in others.items() if count}
    if elsewhere:
        listed = ", ".join(f"{name} ({count:,})" for name, count in sorted(elsewhere.items()))
        hint += f", or pass --model with a version that logged features: {listed}"
    return DriftReportError(reason + hint + " (or use --source customers)")


async def _customers(
    engine: AsyncEngine, since: datetime, artifact: ModelArtifact, progress: Progress
) -> FloatMatrix:
    names = artifact.encoder.feature_names
    async with engine.connect() as connection:
        total = (
            await connection.execute(
                select(func.count()).select_from(Customer).where(Customer.updated_at >= since)
            )
        ).scalar_one()
        progress("reading the stored customers", 0, int(total))
        parts: list[FloatMatrix] = []
        read = 0
        result = await connection.stream(
            select(Customer.features).where(Customer.updated_at >= since)
        )
        async for part in result.partitions(READ_CHUNK_ROWS):
            try:
                rows = [with_defaults(features, artifact.schema) for (features,) in part]
            except MissingStoredFeatures as error:
                raise DriftReportError(error.detail) from None
            columns = {name: [row[name] for row in rows] for name in names}
            parts.append(artifact.encoder.encode_columns(columns))
            read += len(part)
            progress("reading the stored customers", read, int(total))
    if not parts:
        raise DriftReportError(
            f"no stored customer was created or updated since {since:%Y-%m-%d %H:%M} UTC"
        )
    return np.concatenate(parts)


async def read_sample(
    database_url: str,
    artifact: ModelArtifact,
    since: datetime,
    source: Source,
    progress: Progress,
) -> DriftSample:
    """The rows of `source` since `since`, encoded as `artifact`'s model sees them."""
    engine = create_engine(
        database_url, pool_size=1, max_overflow=0, statement_timeout_ms=READ_STATEMENT_TIMEOUT_MS
    )
    try:
        matrices: list[FloatMatrix] = []
        scores: list[npt.NDArray[np.float64]] = []
        logged = customers = 0
        if source in ("log", "both"):
            rows, probabilities = await _logged(
                engine, since, artifact.version, len(artifact.schema.names), progress
            )
            matrices.append(rows)
            scores.append(probabilities)
            logged = len(rows)
        if source in ("customers", "both"):
            rows = await _customers(engine, since, artifact, progress)
            progress("scoring the stored customers", 0, len(rows))
            scores.append(np.asarray(ChurnPredictor(artifact).probabilities(rows), np.float64))
            progress("scoring the stored customers", len(rows), len(rows))
            matrices.append(rows)
            customers = len(rows)
    finally:
        await engine.dispose()
    return DriftSample(np.concatenate(matrices), np.concatenate(scores), logged, customers)


def summary_lines(report: DriftReport, limit: int = 5) -> Sequence[str]:
    """What the command prints: the sample, the largest PSIs, the prediction's."""
    lines = [
        f"model {report.model_version}: {report.sample_rows:,} rows since "
        f"{report.since:%Y-%m-%d %H:%M} UTC ({report.logged_rows:,} logged, "
        f"{report.customer_rows:,} stored customers) against {report.training_rows:,} "
        "training rows",
    ]
    for feature in report.features[:limit]:
        lines.append(f"  {feature.name:<18} PSI {feature.psi:7.4f}  {feature.status}")
    prediction = report.prediction
    lines.append(f"  {'prediction':<18} PSI {prediction.psi:7.4f}  {prediction.status}")
    drifted = report.drifted
    lines.append(
        f"{len(drifted)} of {len(report.features)} features drifted (PSI > {DRIFT_PSI})"
        + (f": {', '.join(drifted)}" if drifted else "")
    )
    return lines
