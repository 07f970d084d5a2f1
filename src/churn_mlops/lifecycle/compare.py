"""How a challenger compares with the champion on real traffic: on the rows both scored (shadow
mode logs both probabilities of every answered row) and, where outcomes are known, on the same
customers' outcomes (both versions' latest score before each outcome)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from churn_mlops.db.models import Prediction
from churn_mlops.db.outcomes import (
    VersionOutcomes,
    latest_observable_date,
    on_common_outcomes,
    paired_outcomes,
)
from churn_mlops.model.quality_metrics import QualityFigures, quality_figures

# The newest shadow rows a comparison reads: a p99 over this many rows is stable, and the read
# stays bounded on a log of millions of rows.
MAX_SHADOW_ROWS = 200_000


@dataclass(frozen=True)
class ShadowAgreement:
    """The two versions on the rows both scored."""

    rows: int
    will_churn_agreement: float | None
    """Share of rows where both decide the same (each with its own threshold); None when the
    challenger's threshold is unknown (a version no longer in the registry)."""
    mean_abs_delta: float | None
    p99_abs_delta: float | None


@dataclass(frozen=True)
class VersionFigures:
    version: str
    answered: int
    """Predictions this version answered in the window (the canary's share, in canary mode)."""
    outcomes: QualityFigures | None
    """On the outcomes both versions scored the customer before; None without any."""


@dataclass(frozen=True)
class Comparison:
    champion: VersionFigures
    challenger: VersionFigures
    shadow: ShadowAgreement
    since: datetime
    common_outcomes: int


async def _shadow_agreement(
    session: AsyncSession,
    champion: str,
    challenger: str,
    since: datetime,
    challenger_threshold: float | None,
) -> ShadowAgreement:
    statement = (
        select(Prediction.probability, Prediction.will_churn, Prediction.challenger_probability)
        .where(
            Prediction.model_version == champion,
            Prediction.challenger_version == challenger,
            Prediction.challenger_probability.is_not(None),
            Prediction.created_at >= since,
        )
        .order_by(Prediction.created_at.desc())
        .limit(MAX_SHADOW_ROWS)
    )
    rows = (await session.execute(statement)).all()
    if not rows:
        return ShadowAgreement(0, None, None, None)
    values = np.array([(p, w, c) for p, w, c in rows], dtype=np.float64)
    delta = np.abs(values[:, 2] - values[:, 0])
    agreement = None
    if challenger_threshold is not None:
        # The champion's decisions as logged; the challenger's with its own threshold.
        challenger_decides = values[:, 2] >= challenger_threshold
        agreement = float(np.mean(challenger_decides == values[:, 1].astype(bool)))
    return ShadowAgreement(
        rows=len(rows),
        will_churn_agreement=agreement,
        mean_abs_delta=float(delta.mean()),
        p99_abs_delta=float(np.quantile(delta, 0.99)),
    )


async def _answered(
    session: AsyncSession, versions: tuple[str, str], since: datetime
) -> dict[str, int]:
    statement = (
        select(Prediction.model_version, func.count())
        .where(Prediction.model_version.in_(versions), Prediction.created_at >= since)
        .group_by(Prediction.model_version)
    )
    return {version: int(count) for version, count in (await session.execute(statement)).all()}


def _figures(outcomes: VersionOutcomes | None) -> QualityFigures | None:
    if outcomes is None or outcomes.churned.size == 0:
        return None
    return quality_figures(outcomes.churned, outcomes.probabilities)


async def compare_versions(
    session: AsyncSession,
    champion: str,
    challenger: str,
    *,
    window_days: int,
    challenger_threshold: float | None,
) -> Comparison:
    """Compare `challenger` with `champion` over the last `window_days` days (predictions made
    and outcomes observed in it); None for a threshold the registry no longer knows."""
    now = datetime.now(UTC)
    since = now - timedelta(days=window_days)
    shadow = await _shadow_agreement(session, champion, challenger, since, challenger_threshold)
    answered = await _answered(session, (champion, challenger), since)
    paired = await paired_outcomes(
        session, observed_since=since.date(), observed_until=latest_observable_date()
    )
    first, second = paired.get(champion), paired.get(challenger)
    common = 0
    if first is not None and second is not None:
        first, second = on_common_outcomes(first, second)
        common = int(first.outcome_ids.size)
    else:
        first = second = None
    return Comparison(
        champion=VersionFigures(champion, answered.get(champion, 0), _figures(first)),
        challenger=VersionFigures(challenger, answered.get(challenger, 0), _figures(second)),
        shadow=shadow,
        since=since,
        common_outcomes=common,
    )
