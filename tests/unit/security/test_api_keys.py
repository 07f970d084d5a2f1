from __future__ import annotations

import hashlib
import hmac

from churn_mlops.security.api_keys import (
    API_KEY_PREFIX,
    generate_api_key,
    hash_api_key,
    key_id_of,
    key_matches,
)

PEPPER = b"p" * 40


def test_generate_api_key_is_prefixed_random_and_names_its_id() -> None:
    first, second = generate_api_key(), generate_api_key()
    assert first.key.startswith(f"{API_KEY_PREFIX}_{first.key_id}_")
    assert len(first.key) >= 50
    assert first.key != second.key
    assert first.key_id != second.key_id
    assert key_id_of(first.key) == first.key_id


def test_key_id_of_refuses_malformed_keys() -> None:
    key = generate_api_key().key
    for bad in ["", "churn_", key[:20], "other_" + key[6:], key.replace("_", "-", 1), key + "!"]:
        assert key_id_of(bad) is None


def test_hash_api_key_is_hmac_sha256_under_the_pepper() -> None:
    key = generate_api_key().key
    expected = hmac.new(PEPPER, key.encode(), hashlib.sha256).hexdigest()
    assert hash_api_key(PEPPER, key) == expected
    assert hash_api_key(b"q" * 40, key) != expected
    assert key not in expected


def test_key_matches_only_the_hashed_key() -> None:
    key, other = generate_api_key().key, generate_api_key().key
    stored = hash_api_key(PEPPER, key)
    assert key_matches(PEPPER, key, stored)
    assert not key_matches(PEPPER, other, stored)
    assert not key_matches(b"q" * 40, key, stored)
