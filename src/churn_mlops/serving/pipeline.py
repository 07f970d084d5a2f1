"""What answering a prediction takes, shared by the fast `/predict` path and the routes:
decode and encode once, batch, score, serialise once."""

from __future__ import annotations

from typing import Any

import orjson

from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.serving.batcher import MicroBatcher, ModelRunner
from churn_mlops.serving.decoding import RequestDecoder


class PredictionPipeline:
    """Turns raw request bodies into response bodies (JSON bytes)."""

    def __init__(
        self,
        predictor: ChurnPredictor,
        decoder: RequestDecoder,
        runner: ModelRunner,
        batcher: MicroBatcher | None,
    ) -> None:
        self.predictor = predictor
        self.decoder = decoder
        self.runner = runner
        self.batcher = batcher
        self._threshold = predictor.threshold
        self._version = predictor.version

    def _answer(self, customer_id: str | None, probability: float) -> dict[str, Any]:
        return {
            "customer_id": customer_id,
            "churn_probability": probability,
            "will_churn": probability >= self._threshold,
            "model_version": self._version,
        }

    async def predict_one(self, body: bytes) -> bytes:
        customer_id, row = self.decoder.single(body)
        if self.batcher is not None:
            probability = await self.batcher.predict(row)
        else:
            probability = float(self.runner.score(row)[0])
        return orjson.dumps(self._answer(customer_id, probability))

    async def predict_many(self, body: bytes) -> bytes:
        customer_ids, rows = self.decoder.batch(body)
        probabilities = (await self.runner.run(rows)).tolist()
        threshold, version = self._threshold, self._version
        return orjson.dumps(
            {
                "predictions": [
                    {
                        "customer_id": customer_id,
                        "churn_probability": probability,
                        "will_churn": probability >= threshold,
                        "model_version": version,
                    }
                    for customer_id, probability in zip(customer_ids, probabilities, strict=True)
                ]
            }
        )

    def warm_up(self, body: bytes) -> None:
        """Pay first-call costs (allocations, compiled code) before the first request."""
        customer_id, row = self.decoder.single(body)
        self.decoder.batch(b"[" + body + b"]")
        orjson.dumps(self._answer(customer_id, float(self.runner.score(row)[0])))

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self.runner.close()
