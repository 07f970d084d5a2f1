"""`churn-mlops outcomes import` on SQLite and PostgreSQL: counts, bad rows named by line and
column, idempotence, and a file it cannot read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Outcome
from tests.fixtures.outcomes import add_customers, empty_tables

pytestmark = pytest.mark.timeout(120)

CUSTOMERS = [f"C-{n:03d}" for n in range(30)]
GOOD_ROWS = [
    f"{c},{'yes' if n % 4 == 0 else 'false'},2026-03-{1 + n % 28:02d}"
    for n, c in enumerate(CUSTOMERS)
]


async def _prepare(url: str) -> None:
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        await add_customers(database, *CUSTOMERS)
    finally:
        await database.dispose()


async def _stored(url: str) -> int:
    database = Database.from_url(url)
    try:
        async with database.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Outcome)) or 0)
    finally:
        await database.dispose()


@pytest.fixture
def url(migrated_database_url: str) -> str:
    asyncio.run(_prepare(migrated_database_url))
    return migrated_database_url


def _import(url: str, path: Path, *options: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["outcomes", "import", str(path), "--url", url, *options])
    return result.exit_code, " ".join(result.stdout.split()), " ".join(result.stderr.split())


def _csv(tmp_path: Path, *lines: str, header: str = "customer_id,churned,observed_at") -> Path:
    path = tmp_path / "outcomes.csv"
    path.write_text("\n".join((header, *lines)) + "\n", encoding="utf-8")
    return path


def test_import_records_every_row_in_batches_and_prints_a_summary(url: str, tmp_path: Path) -> None:
    code, out, _ = _import(url, _csv(tmp_path, *GOOD_ROWS), "--batch-rows", "7")
    assert code == 0
    assert "inserted │ 30" in out
    assert "total │ 30" in out
    assert asyncio.run(_stored(url)) == 30


def test_import_again_leaves_every_row_unchanged(url: str, tmp_path: Path) -> None:
    path = _csv(tmp_path, *GOOD_ROWS)
    _import(url, path)
    code, out, _ = _import(url, path)
    assert code == 0
    assert "inserted │ 0" in out
    assert "unchanged (already recorded) │ 30" in out
    assert asyncio.run(_stored(url)) == 30


def test_import_skips_bad_rows_naming_line_and_column_and_exits_1(url: str, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "C-000,true,2026-03-01",
        "C-001,maybe,2026-03-01",  # line 3
        "C-002,0,01/03/2026",  # line 4
        "C-003,1",  # line 5: short
        ",1,2026-03-01",  # line 6
        "C-404,1,2026-03-01",  # unknown customer
        "C-004,No,2026-03-02",
    )
    code, out, err = _import(url, path)
    assert code == 1
    assert "line 3, column churned: 'maybe' is not true/false, yes/no or 1/0" in err
    assert "line 4, column observed_at: '01/03/2026' is not a date as YYYY-MM-DD" in err
    assert "line 5, column observed_at: is missing" in err
    assert "line 6, column customer_id: is empty" in err
    assert "4 invalid row(s) skipped" in err
    assert "inserted │ 2" in out
    assert "unknown customer (skipped) │ 1" in out
    assert "invalid (skipped) │ 4" in out
    assert "total │ 7" in out
    assert asyncio.run(_stored(url)) == 2


def test_import_refuses_a_file_without_the_needed_columns(url: str, tmp_path: Path) -> None:
    path = _csv(tmp_path, "C-000,true", header="customer_id,churn")
    code, _, err = _import(url, path)
    assert code == 2
    assert "missing column(s) churned, observed_at; the header has customer_id, churn" in err
    assert asyncio.run(_stored(url)) == 0
