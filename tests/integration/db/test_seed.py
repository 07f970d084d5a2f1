from __future__ import annotations

import pytest
from anyio import to_thread
from sqlalchemy import func, select
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import EXAMPLE_CUSTOMER_ID, EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer, Prediction
from churn_mlops.db.repository import CustomerRepository, customer_features
from churn_mlops.db.seed import seed_dataset, seed_synthetic_customers, seed_synthetic_predictions

pytestmark = pytest.mark.timeout(120)


async def _count(database: Database, model: type[Customer] | type[Prediction]) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.anyio
async def test_seed_dataset_is_idempotent_and_updates_features(
    database: Database, dataset: TelcoDataset
) -> None:
    first = await seed_dataset(database, dataset, batch_size=700)
    async with database.sessions.begin() as session:
        await CustomerRepository(session).update_features(EXAMPLE_CUSTOMER_ID, {"tenure": 1})
    again = await seed_dataset(database, dataset)
    assert first.total == again.total == len(dataset)
    async with database.sessions() as session:
        customer = await CustomerRepository(session).get(EXAMPLE_CUSTOMER_ID)
    assert customer_features(customer) == EXAMPLE_FEATURES


@pytest.mark.anyio
async def test_seed_synthetic_tops_up_to_the_number_asked(
    database: Database, dataset: TelcoDataset
) -> None:
    written: list[int] = []
    first = await seed_synthetic_customers(
        database, dataset, 1200, batch_size=500, progress=written.append
    )
    second = await seed_synthetic_customers(database, dataset, 2000, batch_size=500)
    third = await seed_synthetic_customers(database, dataset, 1500)
    assert (first.written, second.written, third.written) == (1200, 800, 0)
    assert written == [0, 500, 500, 200]
    assert await _count(database, Customer) == 2000
    async with database.sessions() as session:
        last = await CustomerRepository(session).get("SYN-000001999")
    assert last.external_id == "SYN-000001999"


@pytest.mark.anyio
async def test_seed_predictions_reference_existing_customers(
    database: Database, dataset: TelcoDataset
) -> None:
    await seed_synthetic_customers(database, dataset, 300)
    first = await seed_synthetic_predictions(database, 2500, batch_size=1000)
    again = await seed_synthetic_predictions(database, 2000)
    assert (first.written, again.written) == (2500, 0)
    async with database.sessions() as session:
        orphans = await session.scalar(
            select(func.count())
            .select_from(Prediction)
            .outerjoin(Customer, Customer.id == Prediction.customer_id)
            .where(Customer.external_id.is_distinct_from(Prediction.external_customer_id))
        )
    assert orphans == 0
    assert await _count(database, Prediction) == 2500


@pytest.mark.anyio
async def test_db_seed_command_loads_the_dataset_and_synthetic_rows(
    database: Database, migrated_database_url: str, dataset: TelcoDataset
) -> None:
    arguments = ["db", "seed", "--synthetic", "500", "--predictions", "1000"]
    arguments += ["--url", migrated_database_url]
    result = await to_thread.run_sync(CliRunner().invoke, app, arguments)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"{len(dataset) + 500:,} customers, 1,000 predictions" in output
    assert await _count(database, Customer) == len(dataset) + 500


def test_db_seed_command_refuses_a_database_that_is_not_migrated(tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["db", "seed", "--url", f"sqlite:///{tmp_path}/empty.db"])
    assert result.exit_code == 1
    assert "run `churn-mlops db upgrade`" in result.output
