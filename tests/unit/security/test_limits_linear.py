"""The JSON shape scan reads each byte of a body once, whatever the body's shape.

Speed is proven by benchmarks, not by timed unit tests: the proof here is a count, on the
kernel's own Python source, of the bytes it reads; and the compiled scan of 10 MB hostile bodies
within a timeout a quadratic scan (the regex it replaced took 3 s for 31 KB) could never meet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from churn_mlops.security import limits
from churn_mlops.security.limits import JsonShape, json_depth_exceeds, json_shape

TEN_MB = 10 * 1024 * 1024


def _fill(unit: bytes, size: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def hostile_bodies(size: int) -> dict[str, bytes]:
    """Bodies of about `size` bytes built to make a scanner go back over what it has read."""
    return {
        "escaped quotes in an unterminated string": _fill(b'\\"', size, b'"'),
        "escaped quotes in a string": _fill(b'\\"', size, b'"', b'"'),
        "escaped backslashes": _fill(b"\\\\", size, b'"', b'"'),
        "escaped backslashes, unterminated": _fill(b"\\\\", size, b'"'),
        "quotes": _fill(b'"', size),
        "quote, bracket": _fill(b'"[', size),
        "empty arrays": _fill(b"[]", size, b"[", b"]"),
        "many small objects": _fill(b"{},", size, b"[", b"{}]"),
        "one object of many keys": _fill(b'"a":1,', size, b"{", b'"b":1}'),
        "commas and colons": _fill(b",:", size),
        "a huge number": _fill(b"9", size, b'{"features": {"tenure": ', b"}}"),
        "a long string": _fill(b"a", size, b'{"customer_id": "', b'"}'),
        "whitespace": _fill(b" ", size, b"{", b"}"),
    }


class CountingBytes:
    """The bytes of a body as the kernel's Python source reads them: which, in what order."""

    def __init__(self, body: bytes) -> None:
        self.data = np.frombuffer(body, np.uint8)
        self.size = self.data.size
        self.read: list[int] = []

    def __getitem__(self, index: int) -> Any:
        self.read.append(index)
        return self.data[index]


@pytest.mark.parametrize("name", list(hostile_bodies(64)))
def test_the_shape_scan_reads_each_byte_at_most_once_in_order(name: str) -> None:
    body = hostile_bodies(31_000)[name]
    counted = CountingBytes(body)
    limits._measure.py_func(counted, 32)
    # The first n bytes, each once (fewer than all when the nesting passes the limit).
    assert counted.read == list(range(len(counted.read)))
    assert len(counted.read) == len(body) or name == "quote, bracket"


def test_the_scan_stops_at_the_first_bracket_past_the_limit() -> None:
    counted = CountingBytes(b"[" * 31_000)
    limits._measure.py_func(counted, 32)
    assert counted.read == list(range(33))


# Compiling the kernel takes about 1.5 s where numba has no disk cache; each scan then takes
# about 10 ms. A scan that went back over the body would take minutes here.
@pytest.mark.timeout(30)
def test_ten_megabytes_of_any_hostile_shape_are_scanned_within_the_timeout() -> None:
    shapes = {name: json_shape(body, 32) for name, body in hostile_bodies(TEN_MB).items()}
    assert shapes["escaped quotes in an unterminated string"].longest_string == TEN_MB - 2
    assert shapes["many small objects"].structural > 10_000_000
    assert shapes["one object of many keys"].widest > 1_700_000


@pytest.mark.timeout(30)
def test_ten_megabytes_of_open_brackets_are_too_deep() -> None:
    assert json_depth_exceeds(b"[" * TEN_MB, 32)


@pytest.mark.parametrize(
    ("body", "shape"),
    [
        (b'{"a": {"b": 1}}', JsonShape(depth=2, structural=6, widest=1, longest_string=1)),
        (b'[{"a":1},{"b":[1,2]},{"c":{}}]', JsonShape(3, 18, 1, 1)),
        (b'{"a": "[[[[{{{{,:,:"}', JsonShape(1, 3, 1, 12)),
        # An escaped quote does not end a string; an escaped backslash before a quote does not
        # escape it.
        (b'{"a": "x\\"[[", "b": "y\\\\", "c": [1]}', JsonShape(2, 9, 3, 5)),
        # Unterminated: the string runs to the end of the body.
        (b'{"a": "[[[[', JsonShape(1, 2, 1, 4)),
        (b'"' + b'\\"' * 10, JsonShape(0, 0, 0, 20)),
        (b"not json at all", JsonShape(0, 0, 0, 0)),
        (b"", JsonShape(0, 0, 0, 0)),
        # A closing bracket with nothing open ends what a parser reads, and the scan.
        (b"]" + b"[" * 100, JsonShape(0, 1, 0, 0)),
    ],
)
def test_json_shape_counts_outside_strings(body: bytes, shape: JsonShape) -> None:
    assert json_shape(body, 32) == shape


def test_the_widest_object_counts_its_own_members_only() -> None:
    body = b'{"a": {"x": 1, "y": 2, "z": 3}, "b": 2}'
    assert json_shape(body, 32).widest == 3
