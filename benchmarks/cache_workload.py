"""Request bodies for the prediction cache's workloads: warm customers, and customers never seen.

The hit path cycles through a small set of warm bodies. The mixed workload interleaves them with
*fresh* bodies, following a schedule of `w` (warm) and `f` (fresh) that has the target share of
`w`. Fresh bodies are made by wrk's Lua script as it sends them, so their supply does not depend
on how fast a server is: fresh body `n` is distinct customer `n % T` of the dataset (T distinct
rows) with its monthly charge raised by `(n // T) % 999 + 1` thousandths of a cent. Sub-cent
amounts never occur in the dataset, so a fresh row can equal neither a dataset row nor another
fresh row (the charge, in units of 1e-5, encodes both the customer's whole-cent charge and the
offset); the rows stay within a cent of real customers. `fresh_body` is the reference of what the
script sends; a test records the script's bodies and compares them with it.

The cache keys hash the encoded float32 row; charges stay below 128, where float32 values are
7.6e-6 apart, so two charges 1e-5 apart are still two different keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

from churn_mlops.data import TelcoDataset

WARM_CUSTOMERS = 500
"""Distinct customers of the hit path: few enough to be warm in every worker within a second."""

SUB_CENT_STEPS = 999
"""Offsets of 1 to 999 hundred-thousandths of a dollar: fresh bodies per distinct customer."""

_UNITS_PER_CENT = 1_000
_UNITS_PER_DOLLAR = 100_000
_PLACEHOLDER = "__monthly_charges__"
# The schedule's granularity: a target ratio is rounded to a fraction with at most this
# denominator, so that each wrk thread's schedule has exactly the target share.
_SCHEDULE_MAX_LENGTH = 100


@dataclass(frozen=True)
class FreshTemplate:
    """A `/predict` body split around its monthly charge, which fresh bodies vary."""

    prefix: bytes
    cents: int
    """The customer's monthly charge in cents."""
    suffix: bytes


def distinct_customers(dataset: TelcoDataset) -> list[tuple[str, dict[str, Any]]]:
    """(customer id, features) of the dataset's customers, first of each distinct row only."""
    seen: set[bytes] = set()
    customers = []
    for customer_id, features in zip(dataset.customer_ids, dataset.feature_rows(), strict=True):
        row = orjson.dumps(features, option=orjson.OPT_SORT_KEYS)
        if row not in seen:
            seen.add(row)
            customers.append((customer_id, features))
    return customers


def warm_bodies(dataset: TelcoDataset, count: int = WARM_CUSTOMERS) -> list[bytes]:
    """`/predict` bodies of the first `count` distinct customers: the hit path's working set."""
    customers = distinct_customers(dataset)
    if not 0 < count <= len(customers):
        raise ValueError(f"between 1 and {len(customers)} warm customers, not {count}")
    return [
        orjson.dumps({"customer_id": customer_id, "features": features})
        for customer_id, features in customers[:count]
    ]


def fresh_templates(dataset: TelcoDataset) -> list[FreshTemplate]:
    """One template per distinct customer of the dataset, in dataset order."""
    templates = []
    marker = orjson.dumps(_PLACEHOLDER)
    for customer_id, features in distinct_customers(dataset):
        cents = round(features["monthly_charges"] * 100)
        if abs(cents - features["monthly_charges"] * 100) > 1e-6:
            raise ValueError(f"customer {customer_id}: monthly charge is not in whole cents")
        body = orjson.dumps(
            {"customer_id": customer_id, "features": {**features, "monthly_charges": _PLACEHOLDER}}
        )
        prefix, suffix = body.split(marker)
        templates.append(FreshTemplate(prefix, cents, suffix))
    return templates


def fresh_supply(templates: Sequence[FreshTemplate]) -> int:
    """How many fresh bodies differ from each other; the script starts over after them."""
    return len(templates) * SUB_CENT_STEPS


def fresh_body(templates: Sequence[FreshTemplate], number: int) -> bytes:
    """Fresh body `number`, as the wrk script makes it."""
    template = templates[number % len(templates)]
    units = template.cents * _UNITS_PER_CENT + (number // len(templates)) % SUB_CENT_STEPS + 1
    dollars, fraction = divmod(units, _UNITS_PER_DOLLAR)
    return template.prefix + b"%d.%05d" % (dollars, fraction) + template.suffix


def write_fresh_templates(path: Path, templates: Iterable[FreshTemplate]) -> Path:
    """One template a line, `prefix TAB cents TAB suffix`, as the wrk script reads them."""
    with path.open("wb") as file:
        for template in templates:
            for part in (template.prefix, template.suffix):
                if b"\t" in part or b"\n" in part:
                    raise ValueError("a template must hold no tab and no newline")
            file.write(b"%s\t%d\t%s\n" % (template.prefix, template.cents, template.suffix))
    return path


def mix_schedule(hit_ratio: float) -> str:
    """Which requests are warm (`w`) and which fresh (`f`), repeated by each wrk thread.

    The ratio is rounded to the nearest fraction p/q with q <= 100; the schedule has length q
    and p warm requests spread as evenly as they go (0.5 gives `fw`, 0.75 `fwww`).
    """
    if not 0 <= hit_ratio <= 1:
        raise ValueError(f"a hit ratio is between 0 and 1, not {hit_ratio}")
    target = Fraction(hit_ratio).limit_denominator(_SCHEDULE_MAX_LENGTH)
    warm, length = target.numerator, target.denominator
    return "".join(
        "w" if (i + 1) * warm // length > i * warm // length else "f" for i in range(length)
    )


def schedule_ratio(schedule: str) -> float:
    """The share of warm requests a schedule sends."""
    return schedule.count("w") / len(schedule)
