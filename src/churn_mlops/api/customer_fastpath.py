"""`GET /customers/{id}` and `GET /customers` as raw ASGI endpoints, and the reads behind them.

FastAPI's dependency resolution cost these reads more than their statement did (about 1 ms of
the worker's CPU per request, docs/performance.md "Database"). The raw endpoints answer the
common request here, before FastAPI: a valid id, a `limit` and an `after` in range. Anything
else (an id or a query parameter FastAPI would refuse, a parameter it ignores, SQLite) goes on
to the FastAPI routes, which answer it exactly as before, so the contract and its errors have
one implementation. Both call `detail_bytes` and `page_bytes`.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import Scope, Send

from churn_mlops.api.deps import database_session, database_unavailable
from churn_mlops.api.errors import log_unexpected_error, problem_bytes
from churn_mlops.api.fastpath import JSON_HEADERS, problem_headers, send_response
from churn_mlops.core.errors import NotFound, ServiceError
from churn_mlops.db.customer_reads import (
    DETAIL_SQL,
    PAGE_SQL,
    detail_json,
    orm_detail_rows,
    orm_page_rows,
    page_json,
)
from churn_mlops.db.read_pool import ReadsUnavailable
from churn_mlops.db.repository import CustomerNotFound
from churn_mlops.runtime import Runtime
from churn_mlops.security.guard import RequestGuard

MAX_PAGE = 100
MAX_RECENT = 100
DEFAULT_PAGE = 20
DEFAULT_RECENT = 10
MAX_ID = 2**63 - 1
READ_BUDGET_SECONDS = 1.5
"""Longest a read on the read pool takes, waiting for a connection included: one indexed
statement answers in milliseconds, so past this the database is in trouble (503, retry)."""

DETAIL_PREFIX = "/customers/"
DETAIL_TEMPLATE = "/customers/{customer_id}"
LIST_PATH = "/customers"
# The id FastAPI's path parameter admits (1 to 64 characters, no control character); a slash
# would be another route.
_CUSTOMER_ID = re.compile(r"[^\x00-\x1f\x7f/]{1,64}")
_DETAIL_QUERY = re.compile(rb"(?:limit=([0-9]{1,3}))?")
_PAGE_PARAMETER = re.compile(rb"(after|limit)=([0-9]{1,19})")


def not_found(external_id: str) -> NotFound:
    return NotFound(f"No customer has the id {external_id!r}.")


async def detail_bytes(runtime: Runtime, external_id: str, limit: int) -> bytes:
    """CustomerDetail as JSON; NotFound, or DatabaseUnavailable (503)."""
    database = runtime.database
    if database is not None and database.reads is not None:
        try:
            rows = await database.reads.fetch(
                DETAIL_SQL, external_id, limit, budget=READ_BUDGET_SECONDS
            )
        except ReadsUnavailable as error:
            raise database_unavailable() from error
        if not rows:
            raise not_found(external_id)
        return detail_json(rows)
    async with database_session(runtime) as session:
        try:
            return detail_json(await orm_detail_rows(session, external_id, limit))
        except CustomerNotFound:
            raise not_found(external_id) from None


async def page_bytes(runtime: Runtime, after: int | None, limit: int) -> bytes:
    """CustomerPage as JSON; DatabaseUnavailable (503)."""
    database = runtime.database
    if database is not None and database.reads is not None:
        cursor = -1 if after is None else after
        try:
            rows = await database.reads.fetch(PAGE_SQL, cursor, limit, budget=READ_BUDGET_SECONDS)
        except ReadsUnavailable as error:
            raise database_unavailable() from error
        return page_json(rows, limit)
    async with database_session(runtime) as session:
        return page_json(await orm_page_rows(session, after, limit), limit)


def detail_arguments(scope: Scope) -> tuple[str, int] | None:
    """(id, limit) of a `GET /customers/{id}` the raw endpoint answers; None for FastAPI."""
    path: str = scope["path"]
    if not path.startswith(DETAIL_PREFIX):
        return None
    external_id = path[len(DETAIL_PREFIX) :]
    if _CUSTOMER_ID.fullmatch(external_id) is None:
        return None
    query = _DETAIL_QUERY.fullmatch(scope["query_string"])
    if query is None:
        return None
    limit = DEFAULT_RECENT if query.group(1) is None else int(query.group(1))
    return (external_id, limit) if 1 <= limit <= MAX_RECENT else None


def page_arguments(scope: Scope) -> tuple[int | None, int] | None:
    """(after, limit) of a `GET /customers` the raw endpoint answers; None for FastAPI."""
    query: bytes = scope["query_string"]
    given: dict[bytes, int] = {}
    for part in query.split(b"&") if query else ():
        parameter = _PAGE_PARAMETER.fullmatch(part)
        if parameter is None or parameter.group(1) in given:
            return None
        given[parameter.group(1)] = int(parameter.group(2))
    after, limit = given.get(b"after"), given.get(b"limit", DEFAULT_PAGE)
    if not 1 <= limit <= MAX_PAGE or (after is not None and after > MAX_ID):
        return None
    return after, limit


class CustomerReadEndpoints:
    """Answers the common customer reads, after the guard admitted them (credentials, the
    `read` scope, rate limit); `arguments` says which requests (the dispatch sends the rest to
    FastAPI)."""

    templates: tuple[str, ...] = (LIST_PATH, DETAIL_TEMPLATE)
    """The FastAPI routes these endpoints answer for, which document them."""

    def __init__(self, runtime: Runtime, guard: RequestGuard) -> None:
        self.runtime = runtime
        self.guard = guard

    def arguments(self, scope: Scope) -> tuple[str, Any] | None:
        """The template and arguments of a request these endpoints answer, or None."""
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(LIST_PATH):
            return None
        database = self.runtime.database
        if database is None or database.reads is None:
            return None  # none configured (FastAPI's 503), or SQLite: the ORM reads
        if path == LIST_PATH:
            page = page_arguments(scope)
            return None if page is None else (LIST_PATH, page)
        detail = detail_arguments(scope)
        return None if detail is None else (DETAIL_TEMPLATE, detail)

    async def answer(self, template: str, arguments: Any, scope: Scope, send: Send) -> None:
        try:
            await self.guard.admit(scope)
            if template == LIST_PATH:
                body = await page_bytes(self.runtime, *arguments)
            else:
                body = await detail_bytes(self.runtime, *arguments)
        except ServiceError as error:
            await send_response(send, error.status, problem_bytes(error), problem_headers(error))
            return
        except Exception as error:
            log_unexpected_error(f"GET {template}", error)
            failure = ServiceError("The server failed to answer this request.")
            await send_response(send, 500, problem_bytes(failure), problem_headers(failure))
            return
        await send_response(send, 200, body, JSON_HEADERS)
