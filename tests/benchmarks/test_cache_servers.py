from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.cache_servers import (
    L1_TTL_SECONDS,
    L2_TTL_SECONDS,
    bench_key_prefix,
    cache_servers,
    remove_keys,
)


def test_cache_servers_turn_the_cache_on_with_l1_only_or_with_the_bench_prefix_in_redis() -> None:
    specs = cache_servers(
        Path("/models/current"),
        service_env={"CHURN_CACHE_ENABLED": "false", "CHURN_BATCH_MAX_SIZE": "16"},
        redis_url="redis://127.0.0.1:6379/3",
        key_prefix="churn-bench-abc",
    )
    assert {name: spec.name for name, spec in specs.items()} == {
        "cache-l1": "cache-l1",
        "cache-l2": "cache-l2",
    }
    assert specs["cache-l1"].env == {
        "CHURN_CACHE_ENABLED": "true",
        "CHURN_CACHE_L1_TTL_SECONDS": str(L1_TTL_SECONDS),
        "CHURN_BATCH_MAX_SIZE": "16",
        "CHURN_REDIS_URL": "",
        "CHURN_LOG_LEVEL": "INFO",
    }
    assert specs["cache-l2"].env == {
        "CHURN_CACHE_ENABLED": "true",
        "CHURN_CACHE_L1_TTL_SECONDS": str(L1_TTL_SECONDS),
        "CHURN_BATCH_MAX_SIZE": "16",
        "CHURN_REDIS_URL": "redis://127.0.0.1:6379/3",
        "CHURN_CACHE_KEY_PREFIX": "churn-bench-abc",
        "CHURN_CACHE_L2_TTL_SECONDS": str(L2_TTL_SECONDS),
        "CHURN_LOG_LEVEL": "INFO",
    }
    assert specs["cache-l2"].workers == 2
    assert specs["cache-l2"].ready_path == "/health/ready"
    assert "/models/current" in specs["cache-l2"].argv


def test_cache_servers_without_redis_have_no_l2_server() -> None:
    assert list(cache_servers(Path("/models/current"))) == ["cache-l1"]


def test_bench_key_prefix_is_new_on_every_call_and_plain() -> None:
    first, second = bench_key_prefix(), bench_key_prefix()
    assert first != second
    assert re.fullmatch(r"churn-bench-[0-9a-f]{12}", first)


@pytest.mark.parametrize("prefix", ["", "churn-bench-*", "churn?", "a[b]", "a\\b"])
def test_remove_keys_refuses_a_prefix_that_would_match_other_keys(prefix: str) -> None:
    # Refused before any connection: the URL is never used.
    with pytest.raises(ValueError, match="not a plain key prefix"):
        remove_keys("redis://127.0.0.1:1/0", prefix)
