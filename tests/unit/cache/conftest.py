from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from churn_mlops.cache import PredictionCache


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class CountingModel:
    """Answers key k with a probability that depends on k; counts calls and rows."""

    def __init__(self, keys: Sequence[bytes], gate: asyncio.Event | None = None) -> None:
        self.keys = list(keys)
        self.gate = gate
        self.calls: list[list[int]] = []
        self.single_calls = 0

    @staticmethod
    def answer(key: bytes) -> float:
        return int.from_bytes(hashlib.blake2b(key, digest_size=3).digest(), "big") / 0xFFFFFF

    async def one(self, key: bytes) -> float:
        self.single_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.answer(key)

    async def many(self, indices: list[int]) -> list[float]:
        self.calls.append(indices)
        if self.gate is not None:
            await self.gate.wait()
        return [self.answer(self.keys[index]) for index in indices]


def row_key(cache: PredictionCache, value: float) -> bytes:
    """The cache key of a row whose 19 features are all `value`."""
    return cache.keys.key_for_row(np.full((1, 19), value, dtype=np.float32))


async def value_of(value: float) -> float:
    return value
