"""API keys: `churn_<key id>_<secret>`, shown once, stored only as HMAC-SHA256 with a pepper.

The key id (12 hex digits) is not secret: it finds the stored record and names the key in logs
and in `churn-mlops keys list`. The whole key is hashed with HMAC-SHA256 under the server's
pepper (`CHURN_API_KEY_PEPPER`), so a copy of the database alone cannot be used to find keys,
and the hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

API_KEY_PREFIX = "churn"
_KEY_ID_BYTES = 6
_SECRET_BYTES = 32
_KEY_PATTERN = re.compile(
    rf"^{API_KEY_PREFIX}_([0-9a-f]{{{2 * _KEY_ID_BYTES}}})_[A-Za-z0-9_-]{{40,64}}$"
)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key_id: str
    key: str
    """The plaintext key: shown once, never stored."""


def generate_api_key() -> NewApiKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    return NewApiKey(key_id, f"{API_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}")


def key_id_of(key: str) -> str | None:
    """The key id of a well-formed key, None for anything else."""
    match = _KEY_PATTERN.match(key)
    return match.group(1) if match else None


def hash_api_key(pepper: bytes, key: str) -> str:
    """HMAC-SHA256 of the key under the pepper, in hex: what the database stores."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def key_matches(pepper: bytes, key: str, stored_hash: str) -> bool:
    """Whether `key` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(hash_api_key(pepper, key), stored_hash)
