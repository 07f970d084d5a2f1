from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from churn_mlops.prediction.challenger import CanarySplit, ShadowScorer, canary_bucket

pytestmark = pytest.mark.anyio


class Recorded:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.batches: list[tuple[Any, ...]] = []

    def record(self, *args: Any) -> None:
        self.rows.append(args)

    def record_many(self, *args: Any) -> None:
        self.batches.append(args)


def test_a_customer_always_lands_in_the_same_bucket() -> None:
    # crc32 of the id, not Python's per-process salted hash: stable across workers and restarts.
    assert canary_bucket("7590-VHVEG") == canary_bucket("7590-VHVEG")
    assert 0 <= canary_bucket("7590-VHVEG") < 10_000


@pytest.mark.parametrize("percent", [0.0, 10.0, 50.0, 100.0])
def test_the_canary_takes_about_its_share_of_customers(percent: float) -> None:
    split = CanarySplit(percent)
    taken = sum(split.takes(f"customer-{n}") for n in range(20_000))
    assert taken / 20_000 == pytest.approx(percent / 100, abs=0.01)


def test_the_canary_never_takes_an_anonymous_request() -> None:
    assert not CanarySplit(100.0).takes(None)


async def test_shadow_scores_one_turns_rows_in_one_call_after_the_turn() -> None:
    calls: list[int] = []

    def score(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return rows[:, 0] / 10

    recorder = Recorded()
    shadow = ShadowScorer(score, "v-challenger", recorder)
    for n in range(3):
        row = np.array([[float(n), 0.0]], dtype=np.float32)
        shadow.add(row, f"c{n}", 0.5, True, False, 1.0, "v-champion")
    assert calls == []
    assert recorder.rows == []
    await asyncio.sleep(0)
    assert calls == [3]
    assert [(r[0], r[5], r[6], r[7]) for r in recorder.rows] == [
        ("c0", "v-champion", "v-challenger", 0.0),
        ("c1", "v-champion", "v-challenger", pytest.approx(0.1)),
        ("c2", "v-champion", "v-challenger", pytest.approx(0.2)),
    ]
    assert shadow.rows_scored == 3


async def test_shadow_scores_a_batch_request_and_records_it_whole() -> None:
    recorder = Recorded()
    shadow = ShadowScorer(lambda rows: rows[:, 0] * 0 + 0.25, "v-challenger", recorder)
    rows = np.zeros((4, 2), dtype=np.float32)
    ids: Sequence[str | None] = ["a", None, "b", "c"]
    shadow.add_many(rows, ids, [0.1] * 4, [False] * 4, [False] * 4, 2.0, "v-champion")
    await asyncio.sleep(0)
    (batch,) = recorder.batches
    assert batch[0] == ids
    assert batch[5] == "v-champion"
    assert batch[6] == "v-challenger"
    assert batch[7] == [0.25] * 4


async def test_a_failing_challenger_still_records_the_champions_answers() -> None:
    def broken(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("challenger broke")

    recorder = Recorded()
    shadow = ShadowScorer(broken, "v-challenger", recorder)
    shadow.add(np.zeros((1, 2), dtype=np.float32), "c", 0.7, True, True, 1.0, "v-champion")
    shadow.add_many(
        np.zeros((2, 2), dtype=np.float32),
        ["a", "b"],
        [0.1, 0.2],
        [False, False],
        [False, False],
        1.0,
        "v-champion",
    )
    await asyncio.sleep(0)
    assert recorder.rows == [("c", 0.7, True, True, 1.0, "v-champion", None, None)]
    assert recorder.batches[0][6:] == (None, None)
    assert shadow.failures == 2
