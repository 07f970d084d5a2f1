from __future__ import annotations

import pytest

from churn_mlops.security.limits import json_depth_exceeds


@pytest.mark.parametrize(
    ("body", "limit", "exceeds"),
    [
        (b'{"a": {"b": 1}}', 2, False),
        (b'{"a": {"b": 1}}', 1, True),
        (b"[" * 33 + b"]" * 33, 32, True),
        (b"[" * 32 + b"]" * 32, 32, False),
        (b'{"a": "[[[[[[[[[[{{{{{{{{"}', 1, False),
        (b'{"a": "\\"[[[[[["}', 1, False),
        (b'[{"a":1},{"b":[1,2]},{"c":{}}]', 3, False),
        (b"[" * 100_000, 32, True),
        (b"not json at all", 1, False),
    ],
)
def test_json_depth_exceeds_counts_nesting_outside_strings(
    body: bytes, limit: int, exceeds: bool
) -> None:
    assert json_depth_exceeds(body, limit) is exceeds
