from __future__ import annotations

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
