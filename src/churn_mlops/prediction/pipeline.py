"""What answering a prediction takes, shared by the fast `/predict` path and the routes:
decode and encode once, look up the cache, batch, score, serialise once."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from churn_mlops.cache import PredictionCache
from churn_mlops.core.protocols import PredictionRecorder
from churn_mlops.core.schema import FeatureSchema, example_features
from churn_mlops.db.prediction_log.features import encode_row, encode_rows
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.prediction.batcher import MicroBatcher, ModelRunner
from churn_mlops.prediction.challenger import Challenger
from churn_mlops.prediction.decoding import Explained, RequestDecoder
from churn_mlops.prediction.reasons import DEFAULT_TOP_K, FeatureValues, ReasonCodes

Probabilities = npt.NDArray[np.float64]


def _decided(
    probabilities: list[float], threshold: float
) -> tuple[Probabilities, npt.NDArray[np.bool_]]:
    scored = np.asarray(probabilities, dtype=np.float64)
    return scored, scored >= threshold


def example_request(schema: FeatureSchema) -> bytes:
    """A `/predict` body of the schema's example customer."""
    return orjson.dumps({"features": example_features(schema)})


class PredictionPipeline:
    """Turns raw request bodies into response bodies (JSON bytes)."""

    def __init__(
        self,
        predictor: ChurnPredictor,
        decoder: RequestDecoder,
        runner: ModelRunner,
        batcher: MicroBatcher | None,
        cache: PredictionCache | None,
        recorder: PredictionRecorder | None = None,
        *,
        log_features: bool = False,
        explain_top_k: int = DEFAULT_TOP_K,
    ) -> None:
        self.predictor = predictor
        self.decoder = decoder
        self.runner = runner
        self.batcher = batcher
        self.cache = cache
        self.recorder = recorder
        """Told about every answered prediction (the prediction log), after the answer is
        serialised; None records nothing."""
        self.log_features = log_features
        """Whether the recorder also gets each scored row's encoded features
        (`CHURN_LOG_FEATURES`); off, it is called exactly as without them."""
        self.challenger: Challenger | None = None
        """Set while a `challenger` alias is followed: scored in shadow or answering a canary
        share; replaced by a single store, like the served model."""
        self._threshold = predictor.threshold
        self._version = predictor.version
        self.reasons = ReasonCodes(
            predictor.explainer, explain_top_k, predictor.version, decoder.names
        )
        """Reason codes for the answers asked for with `"explain": true`."""
        self.example_body = example_request(decoder.schema)
        """A valid `/predict` body of this model's schema (its example): the warm-up's."""

    @property
    def schema(self) -> FeatureSchema:
        """The served model's feature schema: what its requests are validated by."""
        return self.decoder.schema

    @property
    def version(self) -> str:
        return self._version

    def _answer(self, customer_id: str | None, probability: float, cached: bool) -> dict[str, Any]:
        return {
            "customer_id": customer_id,
            "churn_probability": probability,
            "will_churn": probability >= self._threshold,
            "model_version": self._version,
            "cached": cached,
        }

    async def _score_one(self, row: FloatMatrix) -> float:
        if self.batcher is not None:
            return await self.batcher.predict(row)
        return float(self.runner.score(row)[0])

    def _start_one(self, row: FloatMatrix) -> Awaitable[float]:
        """Start scoring one row: the batcher's future (the cache shares it with identical
        misses without a task of its own), or a coroutine when there is no batcher."""
        if self.batcher is not None:
            return self.batcher.submit(row)
        return self._score_one(row)

    async def predict_one(self, body: bytes) -> bytes:
        start = time.perf_counter()
        customer_id, row, explained = self.decoder.single_explained(body)
        return await self._predict_row(customer_id, row, start, explained)

    def _answering(self, customer_id: str | None) -> PredictionPipeline:
        """This pipeline, or the canary's when the challenger takes this customer."""
        challenger = self.challenger
        if challenger is None or challenger.canary is None or challenger.pipeline is None:
            return self
        return challenger.pipeline if challenger.canary.takes(customer_id) else self

    async def predict_features(self, customer_id: str | None, features: dict[str, Any]) -> bytes:
        """One customer whose features are already valid (stored ones): the same encoder,
        cache and batcher as `predict_one`, without a body to decode."""
        start = time.perf_counter()
        return await self._predict_row(
            customer_id, self.decoder.encoder.encode_row(features), start
        )

    def explain_features(self, customer_id: str | None, features: dict[str, Any]) -> dict[str, Any]:
        """The reasons of one customer's valid (stored) features, from the model that answers
        this customer; Conflict (409) if that model has no explanation data."""
        answering = self._answering(customer_id)
        values = tuple(features[name] for name in answering.decoder.names)
        return answering.reasons.of_row(answering.decoder.encoder.encode_row(features), values)

    async def _predict_row(
        self,
        customer_id: str | None,
        row: FloatMatrix,
        start: float,
        explained: FeatureValues | None = None,
    ) -> bytes:
        answering = self._answering(customer_id)
        if answering is not self:
            return await answering._predict_row(customer_id, row, start, explained)
        if explained is not None:
            self.reasons.require()  # refused before any scoring
        cache = self.cache
        if cache is None:
            probability, cached = await self._score_one(row), False
        else:
            # An L1 hit is answered here, synchronously: no future or task, no suspension.
            key = cache.keys.key_for_row(row)
            hit = cache.lookup(key)
            if hit is not None:
                probability, cached = hit, True
            else:
                probability, cached = await cache.resolve(key, partial(self._start_one, row))
        document = self._answer(customer_id, probability, cached)
        if explained is not None:
            document["reasons"] = self.reasons.of_row(row, explained)
        answer = orjson.dumps(document)
        recorder = self.recorder
        if recorder is not None:
            latency_ms = (time.perf_counter() - start) * 1000.0
            will_churn = probability >= self._threshold
            challenger = self.challenger
            if challenger is not None and challenger.shadow is not None:
                challenger.shadow.add(
                    row, customer_id, probability, will_churn, cached, latency_ms, self._version
                )
            elif self.log_features:
                recorder.record(
                    customer_id, probability, will_churn, cached, latency_ms, self._version,
                    features=encode_row(row),
                )  # fmt: skip
            else:
                recorder.record(
                    customer_id, probability, will_churn, cached, latency_ms, self._version
                )
        return answer

    async def predict_many(self, body: bytes) -> bytes:
        start = time.perf_counter()
        customer_ids, rows, explained = self.decoder.batch_explained(body)
        challenger = self.challenger
        if challenger is not None and challenger.canary is not None:
            takes = challenger.canary.takes
            canary_rows = [i for i, customer in enumerate(customer_ids) if takes(customer)]
            if canary_rows and challenger.pipeline is not None:
                return await self._predict_split(
                    customer_ids, rows, canary_rows, challenger.pipeline, start, explained
                )
        if explained is not None:
            self.reasons.require()  # refused before any scoring
        probabilities, cached = await self._probabilities(rows)
        threshold, version = self._threshold, self._version
        will_churn = [probability >= threshold for probability in probabilities]
        predictions = [
            {
                "customer_id": customer_id,
                "churn_probability": probability,
                "will_churn": churns,
                "model_version": version,
                "cached": hit,
            }
            for customer_id, probability, churns, hit in zip(
                customer_ids, probabilities, will_churn, cached, strict=True
            )
        ]
        if explained is not None:
            self.reasons.add_to(predictions, rows, explained)
        answer = orjson.dumps({"predictions": predictions})
        self._record_rows(customer_ids, rows, probabilities, cached, start, will_churn)
        return answer

    async def predict_rows(
        self, customer_ids: list[str | None], rows: FloatMatrix, *, exact: bool = False
    ) -> tuple[Probabilities, npt.NDArray[np.bool_]]:
        """Rows already decoded (the Open Inference Protocol's tensors): each row's probability
        and decision, through the same cache, batcher, canary/shadow challenger and prediction
        log as `/predict` (one row) and `/predict/batch` (more). `exact`: this pipeline's model
        answers every row (a caller that named its version), no canary share."""
        if len(customer_ids) == 1:
            probability, will_churn = await self.predict_row(customer_ids[0], rows, exact=exact)
            return np.array([probability]), np.array([will_churn])
        start = time.perf_counter()
        challenger = self.challenger
        if not exact and challenger is not None and challenger.canary is not None:
            takes = challenger.canary.takes
            taken = np.fromiter(map(takes, customer_ids), dtype=bool, count=len(customer_ids))
            if taken.any() and challenger.pipeline is not None:
                out = np.empty(len(customer_ids), dtype=np.float64)
                decisions = np.empty(len(customer_ids), dtype=np.bool_)
                parts = (
                    (self, np.flatnonzero(~taken)),
                    (challenger.pipeline, np.flatnonzero(taken)),
                )
                for pipeline, indices in parts:
                    if len(indices):
                        part = [customer_ids[i] for i in indices.tolist()]
                        out[indices], decisions[indices] = await pipeline._predict_part(
                            part, rows[indices], start
                        )
                return out, decisions
        return await self._predict_part(customer_ids, rows, start)

    async def predict_row(
        self, customer_id: str | None, row: FloatMatrix, *, exact: bool = False
    ) -> tuple[float, bool]:
        """One decoded row (a `[1, n]` matrix): its probability and decision, as `predict_rows`
        gives them for one row, without numpy arrays around two scalars."""
        start = time.perf_counter()
        answering = self if exact else self._answering(customer_id)
        probability, hit = await answering._probability_of_row(row)
        will_churn = probability >= answering._threshold
        answering._record_rows([customer_id], row, [probability], [hit], start, [will_churn])
        return probability, will_churn

    async def _predict_part(
        self, customer_ids: list[str | None], rows: FloatMatrix, start: float
    ) -> tuple[Probabilities, npt.NDArray[np.bool_]]:
        probabilities, cached = await self._probabilities(rows)
        self._record_rows(customer_ids, rows, probabilities, cached, start)
        return _decided(probabilities, self._threshold)

    async def _probability_of_row(self, row: FloatMatrix) -> tuple[float, bool]:
        """One row's probability and whether the cache answered it, as `/predict` scores it."""
        cache = self.cache
        if cache is None:
            return await self._score_one(row), False
        key = cache.keys.key_for_row(row)
        hit = cache.lookup(key)
        if hit is not None:
            return hit, True
        return await cache.resolve(key, partial(self._start_one, row))

    def _record_rows(
        self,
        customer_ids: list[str | None],
        rows: FloatMatrix,
        probabilities: list[float],
        cached: list[bool],
        start: float,
        will_churn: list[bool] | None = None,
    ) -> None:
        """Hand scored rows to the shadow challenger or the prediction log (with their features
        when `log_features`); `will_churn` when the caller has the decisions already."""
        recorder = self.recorder
        if recorder is None:
            return
        latency_ms = (time.perf_counter() - start) * 1000.0
        threshold, version = self._threshold, self._version
        if will_churn is None:
            will_churn = [probability >= threshold for probability in probabilities]
        challenger = self.challenger
        if challenger is not None and challenger.shadow is not None:
            challenger.shadow.add_many(
                rows, customer_ids, probabilities, will_churn, cached, latency_ms, version
            )
        elif self.log_features:
            recorder.record_many(
                customer_ids, probabilities, will_churn, cached, latency_ms, version,
                features=encode_rows(rows),
            )  # fmt: skip
        else:
            recorder.record_many(
                customer_ids, probabilities, will_churn, cached, latency_ms, version
            )

    async def _probabilities(self, rows: FloatMatrix) -> tuple[list[float], list[bool]]:
        """Each row's probability and whether it came from the cache."""
        cache = self.cache
        if cache is None:
            probabilities: list[float] = (await self.runner.run(rows)).tolist()
            return probabilities, [False] * len(probabilities)

        async def compute_missing(indices: list[int]) -> list[float]:
            missing = rows[np.asarray(indices, dtype=np.intp)]
            result: list[float] = (await self.runner.run(missing)).tolist()
            return result

        return await cache.get_or_compute_many(cache.keys.keys_for_rows(rows), compute_missing)

    async def _predict_split(
        self,
        customer_ids: list[str | None],
        rows: FloatMatrix,
        canary_rows: list[int],
        canary: PredictionPipeline,
        start: float,
        explained: list[Explained] | None = None,
    ) -> bytes:
        """A batch some of whose customers the canary answers: each part scored (and cached)
        by its own model, answered in the request's order, recorded under each version."""
        taken = np.zeros(len(customer_ids), dtype=bool)
        taken[canary_rows] = True
        parts = [(self, np.flatnonzero(~taken)), (canary, np.flatnonzero(taken))]
        answers: list[dict[str, Any]] = [{}] * len(customer_ids)
        recorded = []
        if explained is not None:
            for pipeline, indices in parts:
                if len(indices):
                    pipeline.reasons.require()  # refused before any scoring
        for pipeline, indices in parts:
            if not len(indices):
                continue
            probabilities, cached = await pipeline._probabilities(rows[indices])
            ids = [customer_ids[i] for i in indices.tolist()]
            will_churn = [p >= pipeline._threshold for p in probabilities]
            for index, customer, probability, churns, hit in zip(
                indices.tolist(), ids, probabilities, will_churn, cached, strict=True
            ):
                answers[index] = {
                    "customer_id": customer,
                    "churn_probability": probability,
                    "will_churn": churns,
                    "model_version": pipeline._version,
                    "cached": hit,
                }
            if explained is not None:
                part_answers = [answers[i] for i in indices.tolist()]
                part_explained = [explained[i] for i in indices.tolist()]
                pipeline.reasons.add_to(part_answers, rows[indices], part_explained)
            recorded.append((pipeline, indices, ids, probabilities, will_churn, cached))
        answer = orjson.dumps({"predictions": answers})
        latency_ms = (time.perf_counter() - start) * 1000.0
        for pipeline, indices, ids, probabilities, will_churn, cached in recorded:
            if pipeline.recorder is None:
                continue
            part = (ids, probabilities, will_churn, cached, latency_ms, pipeline._version)
            if pipeline.log_features:
                pipeline.recorder.record_many(*part, features=encode_rows(rows[indices]))
            else:
                pipeline.recorder.record_many(*part)
        return answer

    def warm_up(self, body: bytes | None = None) -> None:
        """Pay first-call costs (allocations, compiled code) before the first request; `body`
        defaults to the schema's example."""
        body = self.example_body if body is None else body
        customer_id, row = self.decoder.single(body)
        _, rows = self.decoder.batch(b"[" + body + b"]")
        if self.cache is not None:
            self.cache.keys.key_for_row(row)
            self.cache.keys.keys_for_rows(rows)
        orjson.dumps(self._answer(customer_id, float(self.runner.score(row)[0]), False))

    async def close(self) -> None:
        # The batcher first: queued requests may still be waiting on the cache's computations.
        if self.batcher is not None:
            await self.batcher.close()
        if self.cache is not None:
            await self.cache.close()
        self.runner.close()
