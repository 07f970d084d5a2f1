"""When an L1 miss should ask Redis: only where the read pays for its wait.

Reading L2 on an L1 miss makes that request wait for a Redis round trip (about 0.1 to 0.3 ms on
loopback, more across a network) before the model may even start; it saves the model call only
on an L2 hit. So a read pays, in the latency of the request that waits for it, when
`hit_rate * compute_time >= read_time`. With the shipped forest a row costs a few microseconds
to score and no hit rate makes a read pay; with a model that takes milliseconds (or fetches
features per request) almost any hit rate does. The policy measures the three terms in the
running service and decides per miss, so nobody has to guess a threshold:

- `hit_rate`: share of keys read from L2 that were there, smoothed over about the last 64;
- `read_time`: wall time of one L2 read (MGET) from its start to its parsed reply;
- `compute_time`: wall time of one computed miss, from `compute()` to its result (for the
  service: the micro-batcher's wait plus the model call).

While reads do not pay, one miss in `probe_every` still reads, so that a hit rate that comes back
(another pod filled Redis, this worker's L1 lost entries to its TTL) or a model that got slower
turns reads back on. Computed answers are written to Redis either way (off the response path),
so other workers and pods keep benefiting. `always` reads on every miss, as before.
"""

from __future__ import annotations

from typing import Literal

ReadPolicyName = Literal["adaptive", "always"]

_SMOOTHING = 1.0 / 64.0


class L2ReadPolicy:
    """Decides, for each L1 miss, whether to look the key up in L2 before computing it."""

    __slots__ = (
        "_computes",
        "_since_probe",
        "adaptive",
        "compute_seconds",
        "hit_rate",
        "probe_every",
        "probes",
        "read_seconds",
        "reads",
        "skipped",
    )

    def __init__(self, policy: ReadPolicyName = "adaptive", *, probe_every: int = 32) -> None:
        if policy not in ("adaptive", "always"):
            raise ValueError(f"unknown L2 read policy {policy!r}")
        if probe_every < 1:
            raise ValueError("probe_every must be >= 1")
        self.adaptive = policy == "adaptive"
        self.probe_every = probe_every
        # Optimistic until measured: a fresh worker reads, and learns from what it reads.
        self.hit_rate = 1.0
        self.read_seconds = 0.0
        self.compute_seconds = 0.0
        self.reads = 0
        self._computes = 0
        self._since_probe = 0
        self.skipped = 0
        """Misses computed without an L2 read because reads did not pay."""
        self.probes = 0
        """Reads made while reads did not pay, to measure again."""

    @property
    def name(self) -> ReadPolicyName:
        return "adaptive" if self.adaptive else "always"

    @property
    def pays(self) -> bool:
        """Whether, by the latest measurements, an L2 read saves more time than it costs."""
        return self._computes == 0 or self.hit_rate * self.compute_seconds >= self.read_seconds

    def should_read(self) -> bool:
        """Whether this miss reads L2 (a probe counts as a read)."""
        if not self.adaptive or self.pays:
            return True
        self._since_probe += 1
        if self._since_probe >= self.probe_every:
            self._since_probe = 0
            self.probes += 1
            return True
        self.skipped += 1
        return False

    def record_read(self, keys: int, hits: int, seconds: float) -> None:
        """One L2 read of `keys` keys that Redis answered, `hits` of them valid, in `seconds`."""
        if keys <= 0:
            return
        if self.reads == 0:
            self.read_seconds = seconds
        else:
            self.read_seconds += _SMOOTHING * (seconds - self.read_seconds)
        self.reads += 1
        # `keys` smoothing steps at once: each key moves the rate 1/64 of the way to 0 or 1.
        keep = (1.0 - _SMOOTHING) ** keys
        self.hit_rate = self.hit_rate * keep + (hits / keys) * (1.0 - keep)

    def record_compute(self, seconds: float) -> None:
        """One computed miss took `seconds` from `compute()` to its result."""
        if self._computes == 0:
            self.compute_seconds = seconds
        else:
            self.compute_seconds += _SMOOTHING * (seconds - self.compute_seconds)
        self._computes += 1
