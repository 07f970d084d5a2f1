"""L2ReadPolicy: an L1 miss reads Redis only while the read saves more time than it costs."""

from __future__ import annotations

import pytest

from churn_mlops.cache.read_policy import L2ReadPolicy


def _decisions(policy: L2ReadPolicy, misses: int) -> list[bool]:
    return [policy.should_read() for _ in range(misses)]


def test_always_policy_reads_every_miss_whatever_it_measured() -> None:
    policy = L2ReadPolicy("always")
    policy.record_read(100, 0, 0.001)
    policy.record_compute(0.000_001)
    assert _decisions(policy, 50) == [True] * 50
    assert (policy.skipped, policy.probes) == (0, 0)


def test_adaptive_policy_reads_until_it_has_measured() -> None:
    policy = L2ReadPolicy()
    assert policy.pays
    policy.record_read(10, 0, 0.001)  # no computed miss measured yet
    assert policy.pays
    assert _decisions(policy, 10) == [True] * 10


def test_reads_that_cost_more_than_they_save_are_skipped_but_one_in_n_probes() -> None:
    policy = L2ReadPolicy(probe_every=32)
    policy.record_read(100, 0, 0.000_300)  # no hit in 100 keys, 0.3 ms a read
    policy.record_compute(0.000_010)  # 10 us a computed miss
    assert not policy.pays
    decisions = _decisions(policy, 64)
    assert [index for index, read in enumerate(decisions) if read] == [31, 63]
    assert (policy.skipped, policy.probes) == (62, 2)


def test_reads_pay_when_the_model_is_slow_even_at_a_modest_hit_rate() -> None:
    policy = L2ReadPolicy()
    policy.record_read(400, 80, 0.000_300)  # 20% hits
    policy.record_compute(0.005)  # 5 ms a computed miss
    assert policy.hit_rate == pytest.approx(0.2, abs=0.01)
    assert policy.pays
    assert _decisions(policy, 20) == [True] * 20


def test_reads_turn_back_on_when_hits_come_back() -> None:
    policy = L2ReadPolicy()
    policy.record_read(200, 0, 0.000_300)
    policy.record_compute(0.000_200)
    assert not policy.pays
    policy.record_read(200, 200, 0.000_300)  # another pod filled Redis
    assert policy.hit_rate > 0.9
    policy.record_compute(0.000_400)  # and the model got slower under load
    for _ in range(200):
        policy.record_compute(0.000_400)
    assert policy.pays


def test_hit_rate_moves_a_64th_of_the_way_per_key() -> None:
    policy = L2ReadPolicy()
    policy.record_read(1, 0, 0.001)
    assert policy.hit_rate == pytest.approx(63 / 64)
    policy.record_read(2, 2, 0.001)
    assert policy.hit_rate == pytest.approx(1 - (1 / 64) * (63 / 64) ** 2)


def test_empty_reads_change_nothing() -> None:
    policy = L2ReadPolicy()
    policy.record_read(0, 0, 1.0)
    assert (policy.reads, policy.read_seconds, policy.hit_rate) == (0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("name", "probe_every", "message"),
    [("sometimes", 32, "unknown L2 read policy"), ("adaptive", 0, "probe_every")],
)
def test_bad_arguments_are_refused(name: str, probe_every: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        L2ReadPolicy(name, probe_every=probe_every)  # type: ignore[arg-type]
