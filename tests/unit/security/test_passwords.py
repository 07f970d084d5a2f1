from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import pytest
from argon2 import PasswordHasher

from churn_mlops.security.passwords import PasswordVerifier

# Cheap parameters: these tests check behaviour, not the cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_verify_accepts_the_right_password() -> None:
    verifier = PasswordVerifier(FAST)
    stored = verifier.hash("correct horse")
    assert stored.startswith("$argon2id$")
    assert verifier.verify(stored, "correct horse")


def test_verify_refuses_a_wrong_password() -> None:
    verifier = PasswordVerifier(FAST)
    assert not verifier.verify(verifier.hash("correct horse"), "wrong horse")


def test_verify_refuses_an_unknown_user_after_checking_a_hash() -> None:
    verifier = PasswordVerifier(FAST)
    # Even the dummy hash's own password does not log in a user that does not exist.
    assert not verifier.verify(None, "churn-mlops: no such user")


def test_verify_refuses_a_corrupt_hash() -> None:
    assert not PasswordVerifier(FAST).verify("not-a-hash", "anything")


@pytest.mark.anyio
async def test_verify_in_thread_gives_the_same_answer() -> None:
    verifier = PasswordVerifier(FAST)
    stored = verifier.hash("correct horse")
    assert await verifier.verify_in_thread(stored, "correct horse")
    assert not await verifier.verify_in_thread(stored, "nope")


class _CountingHasher(PasswordHasher):
    """FAST, recording how many verifications run at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.02)
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.anyio
async def test_concurrent_logins_verify_one_password_at_a_time() -> None:
    hasher = _CountingHasher()
    verifier = PasswordVerifier(hasher)
    stored = verifier.hash("correct horse")

    results = await asyncio.gather(
        *(verifier.verify_in_thread(stored, "correct horse") for _ in range(6))
    )

    assert results == [True] * 6
    assert hasher.most_at_once == 1
