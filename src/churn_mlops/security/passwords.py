"""argon2id password hashes. Verifying one is deliberately slow, so it runs in a thread."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class PasswordVerifier:
    """Hashes and verifies passwords; an unknown user costs the same work as a known one."""

    def __init__(self, hasher: PasswordHasher | None = None, max_concurrent: int = 1) -> None:
        self._hasher = hasher or PasswordHasher()
        # One argon2 verification keeps a core busy for tens of milliseconds (on several lanes):
        # a burst of logins must queue behind each other, not take the cores from predictions
        # (20 simultaneous logins made the batcher shed /predict in a Locust run).
        self._slots = asyncio.Semaphore(max_concurrent)
        # Verified when there is no user, so that timing does not reveal which names exist.
        self._dummy_hash = self._hasher.hash("churn-mlops: no such user")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` matches `stored_hash`; False (after the same work) without one."""
        try:
            self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    async def verify_in_thread(self, stored_hash: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self.verify, stored_hash, password)
