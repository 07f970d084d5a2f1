"""A bounded load of distinct predictions through the load balancer, every answer recorded.

Each client sends one request at a time on its own keep-alive connection, with a customer id
of its own (`<tag>-<client>-<n>`) and a row no other request has, so that every answer is a
computed prediction and one row of the prediction log, findable by that id. The load stops when
asked, after `max_requests` in all, or after `max_seconds`, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from churn_mlops.data.telco_example import EXAMPLE_FEATURES

CLIENTS = 16


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got, and when (monotonic seconds)."""

    customer_id: str
    status: int
    """The HTTP status, or 0 when the client got no response at all."""
    served_by: str | None
    """The instance HAProxy sent it to (its `X-Served-By` header)."""
    model_version: str | None
    sent_at: float
    answered_at: float
    error: str | None = None
    """The body of an error, or what the client saw when it got no response."""

    @property
    def ok(self) -> bool:
        return self.status == 200


def body(tag: str, client: int, n: int) -> dict[str, object]:
    """A `/predict` body whose row no other (tag, client, n) has: never a cache hit."""
    features = dict(EXAMPLE_FEATURES)
    features["monthly_charges"] = 20.0 + (client * 100_003 + n) % 10_000 / 100
    features["tenure"] = n % 72
    features["total_charges"] = 100.0 + zlib.crc32(tag.encode()) % 100_000 + client + n / 10_000
    return {"customer_id": f"{tag}-{client}-{n}", "features": features}


async def _client(
    url: str,
    headers: Mapping[str, str],
    tag: str,
    client: int,
    stop: asyncio.Event,
    budget: list[int],
    answers: list[Answer],
) -> None:
    async with httpx.AsyncClient(base_url=url, headers=dict(headers), timeout=30) as http:
        n = 0
        while not stop.is_set() and budget[0] > 0:
            budget[0] -= 1
            n += 1
            request = body(tag, client, n)
            customer_id = str(request["customer_id"])
            sent_at = time.monotonic()
            try:
                # The id doubles as the request id, which HAProxy writes in its log of a
                # failed request: a failure without an answer is found there.
                response = await http.post(
                    "/predict", json=request, headers={"X-Request-ID": customer_id}
                )
            except httpx.TransportError as error:
                answers.append(
                    Answer(customer_id, 0, None, None, sent_at, time.monotonic(), repr(error))
                )
                continue
            ok = response.status_code == 200
            answers.append(
                Answer(
                    customer_id,
                    response.status_code,
                    response.headers.get("x-served-by"),
                    response.json()["model_version"] if ok else None,
                    sent_at,
                    time.monotonic(),
                    None if ok else response.text[:300],
                )
            )


async def run_load(
    url: str,
    headers: Mapping[str, str],
    tag: str,
    stop: asyncio.Event,
    *,
    max_requests: int,
    max_seconds: float,
    clients: int = CLIENTS,
) -> list[Answer]:
    """`clients` clients sending distinct predictions to `url` until `stop` is set, `max_requests`
    were sent or `max_seconds` passed; every request's answer."""
    answers: list[Answer] = []
    budget = [max_requests]
    tasks = [
        asyncio.create_task(_client(url, headers, tag, n, stop, budget, answers))
        for n in range(clients)
    ]
    deadline = asyncio.get_running_loop().call_later(max_seconds, stop.set)
    try:
        await asyncio.gather(*tasks)
    finally:
        deadline.cancel()
        stop.set()
    return answers


def summary(answers: Iterable[Answer]) -> str:
    """'N answered, M failed (statuses), by instance', and what the first failure got."""
    answers = list(answers)
    failed = Counter(a.status for a in answers if not a.ok)
    served = Counter(a.served_by for a in answers if a.ok)
    first = next((a for a in answers if not a.ok), None)
    return (
        f"{len(answers) - sum(failed.values()):,} answered, {sum(failed.values())} failed "
        f"{dict(failed) or ''}, by instance {dict(sorted(served.items()))}"
        + ("" if first is None else f"; first failure {first.customer_id}: {first.error}")
    ).replace(" ,", ",")
