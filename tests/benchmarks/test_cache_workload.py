from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from benchmarks.cache_workload import (
    SUB_CENT_STEPS,
    FreshTemplate,
    distinct_customers,
    fresh_body,
    fresh_supply,
    fresh_templates,
    mix_schedule,
    schedule_ratio,
    warm_bodies,
    write_fresh_templates,
)
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import PredictRequest


def _cache_row(body: bytes) -> tuple[Any, ...]:
    """What the cache key sees of a valid body: every feature, the charges as float32."""
    features = PredictRequest.model_validate_json(body).features.model_dump()
    return tuple(
        np.float32(np.nan if value is None else value).tobytes()
        if name in ("monthly_charges", "total_charges")
        else value
        for name, value in sorted(features.items())
    )


@pytest.fixture(scope="module")
def templates(dataset: TelcoDataset) -> list[FreshTemplate]:
    return fresh_templates(dataset)


def test_warm_bodies_are_distinct_valid_customers_of_the_dataset(dataset: TelcoDataset) -> None:
    bodies = warm_bodies(dataset)
    assert len(bodies) == 500
    assert len({_cache_row(body) for body in bodies}) == 500
    assert orjson.loads(bodies[0]) == {
        "customer_id": dataset.customer_ids[0],
        "features": next(dataset.feature_rows()),
    }


def test_warm_bodies_refuse_more_customers_than_the_dataset_has(dataset: TelcoDataset) -> None:
    with pytest.raises(ValueError, match="warm customers"):
        warm_bodies(dataset, len(distinct_customers(dataset)) + 1)


def test_fresh_templates_rebuild_each_customer_around_its_monthly_charge(
    dataset: TelcoDataset, templates: list[FreshTemplate]
) -> None:
    customers = distinct_customers(dataset)
    assert len(templates) == len(customers) == 4_900
    for template, (customer_id, features) in zip(templates, customers, strict=True):
        charge = orjson.dumps(features["monthly_charges"])
        original = orjson.dumps({"customer_id": customer_id, "features": features})
        assert template.prefix + charge + template.suffix == original
        assert template.cents == round(features["monthly_charges"] * 100)


def test_fresh_body_raises_the_charge_by_thousandths_of_a_cent(
    templates: list[FreshTemplate],
) -> None:
    first = orjson.loads(fresh_body(templates, 0))["features"]["monthly_charges"]
    second_cycle = orjson.loads(fresh_body(templates, len(templates)))["features"]
    last = orjson.loads(fresh_body(templates, fresh_supply(templates) - 1))["features"]
    assert first == 79.85001  # the first customer's 79.85
    assert second_cycle["monthly_charges"] == 79.85002
    assert last["monthly_charges"] == pytest.approx(templates[-1].cents / 100 + 0.00999)


def test_fresh_bodies_are_valid_and_distinct_from_each_other_and_the_dataset(
    dataset: TelcoDataset, templates: list[FreshTemplate]
) -> None:
    supply = fresh_supply(templates)
    assert supply == 4_900 * SUB_CENT_STEPS
    # Three whole cycles, and the numbers around the last cycle boundaries.
    numbers = [*range(3 * len(templates)), *range(supply - 2 * len(templates), supply)]
    rows = [_cache_row(fresh_body(templates, n)) for n in numbers]
    assert len(set(rows)) == len(numbers)
    dataset_rows = {
        _cache_row(orjson.dumps({"features": features})) for features in dataset.feature_rows()
    }
    assert dataset_rows.isdisjoint(rows)


def test_fresh_bodies_start_over_after_the_supply(templates: list[FreshTemplate]) -> None:
    supply = fresh_supply(templates)
    assert fresh_body(templates, supply) == fresh_body(templates, 0)
    assert fresh_body(templates, supply + 7) == fresh_body(templates, 7)


def test_write_fresh_templates_writes_prefix_cents_and_suffix_per_line(tmp_path: Path) -> None:
    path = write_fresh_templates(
        tmp_path / "fresh.tsv",
        [FreshTemplate(b'{"a":', 1985, b"}"), FreshTemplate(b'{"b":', 2, b',"c":1}')],
    )
    assert path.read_bytes() == b'{"a":\t1985\t}\n{"b":\t2\t,"c":1}\n'


def test_write_fresh_templates_refuses_a_tab(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no tab"):
        write_fresh_templates(tmp_path / "fresh.tsv", [FreshTemplate(b'{"a\t":', 1, b"}")])


@pytest.mark.parametrize(
    ("ratio", "schedule"),
    [
        (0.5, "fw"),
        (1.0, "w"),
        (0.0, "f"),
        (0.75, "fwww"),
        (0.25, "fffw"),
        (0.333, "ffw"),
        (0.9, "fwwwwwwwww"),
    ],
)
def test_mix_schedule_spreads_the_warm_requests_evenly(ratio: float, schedule: str) -> None:
    assert mix_schedule(ratio) == schedule


def test_mix_schedule_rounds_the_ratio_to_a_hundredth_at_most() -> None:
    schedule = mix_schedule(0.37)
    assert len(schedule) == 100
    assert schedule_ratio(schedule) == 0.37
    # Spread out, not grouped: 37 warm requests among 63 fresh ones.
    assert "fff" not in schedule
    assert "ww" not in schedule
    assert schedule_ratio(mix_schedule(0.123456)) == pytest.approx(10 / 81)


@pytest.mark.parametrize("ratio", [-0.1, 1.01])
def test_mix_schedule_refuses_a_ratio_outside_0_and_1(ratio: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        mix_schedule(ratio)
