"""The L2 value format: compact JSON, checked on every read.

A value is `{"p":0.0854,"v":"v48d7983e37a5","k":"<digest>"}`: the probability, the model
version that computed it and the digest of the key it was written under. JSON, never pickle: a
value in a shared Redis is untrusted input, and unpickling it would run whatever it says.
The version and the key digest make a value that was written by another model, another service
or under another key (a client that read a reply meant for another command) a miss rather than
a wrong answer. orjson writes floats in their shortest round-trip form, so a cached probability
is bit-for-bit the computed one.
"""

from __future__ import annotations

import orjson

MAX_VALUE_BYTES = 256
"""Longer values are refused without being parsed (ours are under 100 bytes)."""


class ValueCodec:
    """Encodes and validates one model version's cached probabilities."""

    __slots__ = ("model_version",)

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version

    def encode(self, probability: float, digest: str) -> bytes:
        return orjson.dumps({"p": probability, "v": self.model_version, "k": digest})

    def decode(self, raw: bytes | str, digest: str) -> float | None:
        """The probability stored in `raw` for the key with `digest`, or None if `raw` is not
        exactly such a value (not JSON, another shape, another version or key, p outside 0..1)."""
        if len(raw) > MAX_VALUE_BYTES:
            return None
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(document) is not dict or len(document) != 3:
            return None
        probability = document.get("p")
        if (
            type(probability) is not float
            or not 0.0 <= probability <= 1.0
            or document.get("v") != self.model_version
            or document.get("k") != digest
        ):
            return None
        return probability


def is_cacheable(probability: float) -> bool:
    """Whether a computed probability may be stored: NaN or out of 0..1 is served, not kept."""
    return 0.0 <= probability <= 1.0
