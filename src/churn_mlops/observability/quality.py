"""Live model quality: how each model version's predictions fared against the outcomes
recorded since (`POST /customers/{id}/outcome`, `churn-mlops outcomes import`).

Every `CHURN_QUALITY_REFRESH_SECONDS` a background task pairs the outcomes observed in the last
`CHURN_QUALITY_WINDOW_DAYS` days with each version's latest prediction made before them
(`db.outcomes.paired_outcomes`: one statement) and sets four gauges per version: ROC AUC, Brier
score, expected calibration error and the number of outcomes they rest on. It never touches a
request: the query and the arithmetic (in a thread, numpy sorts) run on the task alone.

Every worker runs its own monitor and computes the same figures (one query per worker and
refresh); the gauges' `livemostrecent` mode exports the freshest, not a sum. While the database
is away the gauges keep their last values and the log says so once, then once more when it is
back. A version that leaves the window gets NaN figures and 0 outcomes: a multiprocess gauge
cannot be removed, and a stale value would keep an alert firing.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from churn_mlops.core.tasks import cancel_and_wait
from churn_mlops.db.engine import Database
from churn_mlops.db.outcomes import VersionOutcomes, paired_outcomes
from churn_mlops.model.quality_metrics import QualityFigures, quality_figures
from churn_mlops.observability.metrics import ServiceMetrics
from churn_mlops.settings import Settings

logger = logging.getLogger("churn_mlops.quality")

# What a lost, refused or slow database raises through SQLAlchemy and the drivers.
_DATABASE_UNAVAILABLE = (SQLAlchemyError, OSError, TimeoutError)


def utc_today() -> date:
    return datetime.now(UTC).date()


def figures_by_version(paired: dict[str, VersionOutcomes]) -> dict[str, QualityFigures]:
    return {
        version: quality_figures(outcomes.churned, outcomes.probabilities)
        for version, outcomes in paired.items()
    }


class QualityMonitor:
    """Recomputes live quality per model version in the background and exports it as gauges.

    `start()` schedules the first refresh at once and then one every `refresh_seconds`;
    `close()` stops it. `refresh()` is one pass, for a test or a caller that wants it now.
    """

    def __init__(
        self,
        database: Database,
        metrics: ServiceMetrics,
        *,
        window_days: int,
        refresh_seconds: float,
        today: Callable[[], date] = utc_today,
    ) -> None:
        self.database = database
        self.window_days = window_days
        self.refresh_seconds = refresh_seconds
        self._today = today
        families = metrics.families
        self._roc_auc = families.gauge("churn_model_live_roc_auc")
        self._brier = families.gauge("churn_model_live_brier_score")
        self._calibration = families.gauge("churn_model_live_calibration_error")
        self._outcomes = families.gauge("churn_model_live_outcomes")
        self.figures: dict[str, QualityFigures] = {}
        """The figures last exported, by model version."""
        self.refreshed_at: datetime | None = None
        """When a refresh last succeeded."""
        self._exported: set[str] = set()
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, database: Database, metrics: ServiceMetrics, settings: Settings
    ) -> QualityMonitor:
        return cls(
            database,
            metrics,
            window_days=settings.quality_window_days,
            refresh_seconds=settings.quality_refresh_seconds,
        )

    def window(self) -> tuple[date, date]:
        """The first and last observed dates of the window: the last `window_days` days, and
        tomorrow, the latest date an outcome may carry (`latest_observable_date`)."""
        today = self._today()
        return today - timedelta(days=self.window_days - 1), today + timedelta(days=1)

    async def refresh(self) -> bool:
        """Recompute and export every version's figures; False (and the last values kept) when
        the database or the computation failed."""
        since, until = self.window()
        try:
            async with self.database.sessions() as session:
                paired = await paired_outcomes(session, observed_since=since, observed_until=until)
            figures = await asyncio.to_thread(figures_by_version, paired)
        except _DATABASE_UNAVAILABLE as error:
            self._failed("the database does not answer (%s)", type(error).__name__)
            return False
        except Exception:
            self._failed("it failed", exc_info=True)
            return False
        if self._failing:
            logger.info("live model quality is computed again")
            self._failing = False
        self._export(figures)
        self.refreshed_at = datetime.now(UTC)
        return True

    def _failed(self, reason: str, *args: object, exc_info: bool = False) -> None:
        # Once per outage: a database that is down for an hour would otherwise log 60 times.
        if not self._failing:
            self._failing = True
            logger.warning(
                "live model quality keeps its last values: " + reason, *args, exc_info=exc_info
            )

    def _export(self, figures: dict[str, QualityFigures]) -> None:
        # A version that left the window keeps a neutral value until the process ends: a
        # multiprocess gauge cannot drop a child, and its last figure would keep an alert firing.
        for version in self._exported - figures.keys():
            for gauge in (self._roc_auc, self._brier, self._calibration):
                gauge.labels(version).set(math.nan)
            self._outcomes.labels(version).set(0)
        for version, figure in figures.items():
            self._roc_auc.labels(version).set(figure.roc_auc)
            self._brier.labels(version).set(figure.brier_score)
            self._calibration.labels(version).set(figure.calibration_error)
            self._outcomes.labels(version).set(figure.outcomes)
        self._exported |= figures.keys()
        self.figures = figures

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_every())

    async def _refresh_every(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_seconds)

    async def close(self) -> None:
        # A refresh in progress reads the database, which may not answer.
        await cancel_and_wait(self._task)
        self._task = None
