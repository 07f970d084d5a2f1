"""A challenger model beside the champion: scored in shadow, or answering a canary share.

- **Shadow**: the champion answers every request; the rows it answered are gathered during one
  event-loop turn and scored by the challenger in one model call at the end of that turn, after
  the responses were written (`call_soon` runs after the callbacks that resume the requests).
  Each answered row is then recorded once, with both probabilities, so the prediction log can
  compare the two models on the same rows. Cached answers are scored too: the question is how
  the challenger would have answered, not how the cache did.
- **Canary**: a deterministic share of customers, chosen by a hash of `customer_id`, is answered
  by the challenger's own pipeline (its batcher, its cache); a customer always gets the same
  model while the share stays the same. Requests without a customer id stay with the champion.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from churn_mlops.core.protocols import PredictionRecorder
from churn_mlops.db.prediction_log.features import encode_row, encode_rows
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import Probabilities

if TYPE_CHECKING:
    from churn_mlops.prediction.pipeline import PredictionPipeline

logger = logging.getLogger("churn_mlops.challenger")

ChallengerMode = Literal["shadow", "canary"]
_BUCKETS = 10_000


def canary_bucket(customer_id: str) -> int:
    """The customer's fixed bucket in [0, 10,000): crc32 is stable across processes and
    restarts (Python's `hash` of a str is salted per process) and costs about 0.1 us."""
    return zlib.crc32(customer_id.encode()) % _BUCKETS


class CanarySplit:
    """Which customers the challenger answers: those whose bucket is below the share."""

    __slots__ = ("_limit", "percent")

    def __init__(self, percent: float) -> None:
        self.percent = percent
        self._limit = round(percent * _BUCKETS / 100)

    def takes(self, customer_id: str | None) -> bool:
        return customer_id is not None and canary_bucket(customer_id) < self._limit


# What `ShadowScorer.add` keeps of one answered row until the end of the loop turn: the encoded
# row, then the champion's answer as `PredictionRecorder.record` takes it (a plain tuple: this is
# on every request's path).
_ShadowRow = tuple[FloatMatrix, str | None, float, bool, bool, float, str]


class ShadowScorer:
    """Scores what the champion answered with the challenger, off the response path, and
    records each answer with both probabilities (see the module docstring)."""

    def __init__(
        self,
        score: Callable[[FloatMatrix], Probabilities],
        version: str,
        recorder: PredictionRecorder,
        *,
        log_features: bool = False,
    ) -> None:
        self.score = score
        self.version = version
        self.recorder = recorder
        self.log_features = log_features
        """Record each row's encoded features too (`CHURN_LOG_FEATURES`, as the champion)."""
        self.rows_scored = 0
        self.failures = 0
        self._pending: list[_ShadowRow] = []
        self._batches: list[Callable[[], None]] = []
        self._scheduled = False

    def add(
        self,
        row: FloatMatrix,
        customer_id: str | None,
        probability: float,
        will_churn: bool,
        cached: bool,
        latency_ms: float,
        champion_version: str,
    ) -> None:
        """Queue one answered row; it is scored and recorded at the end of this loop turn."""
        self._pending.append(
            (row, customer_id, probability, will_churn, cached, latency_ms, champion_version)
        )
        self._schedule()

    def add_many(
        self,
        rows: FloatMatrix,
        customer_ids: Sequence[str | None],
        probabilities: Sequence[float],
        will_churn: Sequence[bool],
        cached: Sequence[bool],
        latency_ms: float,
        champion_version: str,
    ) -> None:
        """Queue one answered batch request; scored in its own model call."""

        def score_batch() -> None:
            shadow = self._score(rows)
            answers = (customer_ids, probabilities, will_churn, cached, latency_ms)
            version = self.version if shadow is not None else None
            if self.log_features:
                features = encode_rows(rows)
                self.recorder.record_many(*answers, champion_version, version, shadow, features)
            else:
                self.recorder.record_many(*answers, champion_version, version, shadow)

        self._batches.append(score_batch)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _score(self, rows: FloatMatrix) -> list[float] | None:
        """The challenger's probabilities, or None when it failed (the champion's answers are
        recorded anyway: a broken challenger must not cost the log its rows)."""
        try:
            scored: list[float] = self.score(rows).tolist()
        except Exception:
            self.failures += 1
            if self.failures == 1:
                logger.exception(
                    "challenger %s failed to score; recording without it", self.version
                )
            return None
        self.rows_scored += len(scored)
        return scored

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        batches, self._batches = self._batches, []
        if pending:
            matrix = (
                pending[0][0]
                if len(pending) == 1
                else np.concatenate([item[0] for item in pending])
            )
            shadow = self._score(matrix)
            record = self.recorder.record
            version = None if shadow is None else self.version
            scores: Sequence[float | None] = shadow if shadow is not None else [None] * len(pending)
            log_features = self.log_features
            for (row, customer, probability, churns, hit, latency, champion), score in zip(
                pending, scores, strict=True
            ):
                answer = (customer, probability, churns, hit, latency, champion, version, score)
                if log_features:
                    record(*answer, encode_row(row))
                else:
                    record(*answer)
        for score_batch in batches:
            score_batch()


@dataclass(frozen=True)
class Challenger:
    """The challenger as the champion's pipeline uses it: one of `shadow` and `canary` set."""

    version: str
    mode: ChallengerMode
    shadow: ShadowScorer | None = None
    canary: CanarySplit | None = None
    pipeline: PredictionPipeline | None = None
    """The challenger's own pipeline (batcher, cache), which answers the canary's requests;
    None in shadow mode, where only its model is used."""
