"""`churn-mlops customers import FILE` against the non-Telco model's schema, on SQLite and
PostgreSQL: a good CSV and a Parquet file are upserted by the id column; a bad file is refused
whole, its errors naming line and column, unless --skip-invalid; and `churn-mlops models
promote` refuses a model the stored customers lack columns for."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from anyio import to_thread
from typer.testing import CliRunner, Result

from churn_mlops.cli import app
from churn_mlops.data import Dataset, load_telco_csv
from churn_mlops.data.telco_example import EXAMPLE_FEATURES
from churn_mlops.db.engine import Database
from churn_mlops.db.repository import CustomerRepository
from churn_mlops.db.seed import seed_dataset
from churn_mlops.model.artifact import METADATA_FILE, ModelArtifact
from churn_mlops.model.registry import LocalRegistry
from tests.fixtures.own_data import HEADER, OWN_FEATURES, own_rows

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


async def _import(url: str, model_dir: Path, *arguments: str) -> Result:
    command = ["customers", "import", *arguments, "--model-dir", str(model_dir), "--url", url]
    return await _invoke(command, {"COLUMNS": "200"})


async def _invoke(command: list[str], environment: dict[str, str]) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(app, command, env=environment)

    return await to_thread.run_sync(invoke)


def _write_csv(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


async def _features(database: Database, external_id: str) -> tuple[dict[str, object], str]:
    async with database.sessions() as session:
        customer = await CustomerRepository(session).get(external_id)
    return customer.features, customer.schema_sha256


async def _count(database: Database) -> int:
    async with database.sessions() as session:
        return len(await CustomerRepository(session).page(None, 1000))


async def test_import_upserts_every_row_of_a_good_csv(
    database: Database,
    migrated_database_url: str,
    own_data_dir: Path,
    own_artifact_dir: Path,
    own_artifact: ModelArtifact,
) -> None:
    rows = own_rows(300)
    path = _write_csv(own_data_dir.parent / "good.csv", rows)
    result = await _import(migrated_database_url, own_artifact_dir, str(path))
    assert result.exit_code == 0, result.output
    assert "300 customers imported (300 new); 300 stored" in " ".join(result.output.split())
    features, sha256 = await _features(database, "ACC-00001")
    assert list(features) == list(OWN_FEATURES)
    assert sha256 == own_artifact.schema.sha256
    first = rows[1]
    assert features["region"] == first[1]
    assert features["seats"] == first[3]
    assert features["has_support_contract"] == (first[6] == "true")

    changed = [list(row) for row in rows[:10]]
    changed[1][3] = 99
    again = await _import(migrated_database_url, own_artifact_dir, str(_write_csv(path, changed)))
    assert again.exit_code == 0, again.output
    assert "10 customers imported (0 new); 300 stored" in " ".join(again.output.split())
    assert (await _features(database, "ACC-00001"))[0]["seats"] == 99


async def test_import_refuses_a_bad_file_naming_line_and_column(
    database: Database, migrated_database_url: str, tmp_path: Path, own_artifact_dir: Path
) -> None:
    rows = [list(row) for row in own_rows(20)]
    rows[3][3] = 0  # Seats below its minimum: line 5 (the header is line 1)
    rows[5][1] = "region-99"  # an unseen region: line 7
    rows[8][4] = "lots"  # MonthlySpend not a number: line 10
    path = _write_csv(tmp_path / "bad.csv", rows)
    result = await _import(migrated_database_url, own_artifact_dir, str(path))
    assert result.exit_code == 1
    output = result.output
    assert "3 invalid cells; nothing was written" in output
    assert "line 5, column Seats: Input should be greater than or equal to 1" in output
    assert "line 7, column Region: Input should be " in output
    assert "line 10, column MonthlySpend: Input should be a valid number" in output
    assert await _count(database) == 0

    skipping = await _import(migrated_database_url, own_artifact_dir, str(path), "--skip-invalid")
    assert skipping.exit_code == 0, skipping.output
    text = " ".join(skipping.output.split())
    assert "17 customers imported (17 new), 3 invalid rows skipped" in text
    assert "skipped line 5, column Seats" in text


async def test_import_reads_parquet_and_names_its_rows(
    database: Database, migrated_database_url: str, tmp_path: Path, own_artifact_dir: Path
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = own_rows(50)
    columns = {name: [row[i] for row in rows] for i, name in enumerate(HEADER)}
    columns["Plan"] = [value or None for value in columns["Plan"]]
    columns["LoginsLast30d"] = [None if v == "" else v for v in columns["LoginsLast30d"]]
    columns["HasSupportContract"] = [v == "true" for v in columns["HasSupportContract"]]
    path = tmp_path / "customers.parquet"
    pq.write_table(pa.table(columns), path)
    result = await _import(migrated_database_url, own_artifact_dir, str(path))
    assert result.exit_code == 0, result.output
    assert "50 customers imported (50 new)" in " ".join(result.output.split())
    features, _ = await _features(database, "ACC-00002")
    assert features["monthly_spend"] == rows[2][4]

    columns["Seats"][4] = -3
    pq.write_table(pa.table(columns), path)
    refused = await _import(migrated_database_url, own_artifact_dir, str(path))
    assert refused.exit_code == 1
    assert "row 5, column Seats: Input should be greater than or equal to 1" in refused.output


async def test_import_refuses_a_telco_file_for_the_own_model(
    database: Database, migrated_database_url: str, own_artifact_dir: Path
) -> None:
    from churn_mlops.data import SHIPPED_DATASET

    result = await _import(migrated_database_url, own_artifact_dir, str(SHIPPED_DATASET))
    assert result.exit_code == 1
    assert "missing columns" in result.output


async def test_models_promote_refuses_a_model_stored_customers_lack_columns_for(
    database: Database,
    migrated_database_url: str,
    tmp_path: Path,
    artifact_dir: Path,
    own_artifact_dir: Path,
) -> None:
    await seed_dataset(database, load_telco_csv().subset(range(20)))
    registry = LocalRegistry(tmp_path / "models")
    telco, own = (registry.register(d).version for d in (artifact_dir, own_artifact_dir))
    environment = {
        "CHURN_MODEL_REGISTRY_DIR": str(registry.root),
        "CHURN_DATABASE_URL": migrated_database_url,
        "COLUMNS": "200",
    }
    refused = await _invoke(["models", "promote", own], environment)
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert f"model {own} reads region, seats, monthly_spend, has_support_contract, " in message
    assert "has_support_contract, which stored customers do not have" in message
    assert registry.resolve("champion") is None

    accepted = await _invoke(["models", "promote", telco], environment)
    assert accepted.exit_code == 0, accepted.output
    assert registry.resolve("champion").version == telco  # type: ignore[union-attr]
    assert json.loads((artifact_dir / METADATA_FILE).read_text())["version"] == telco
    assert EXAMPLE_FEATURES  # the stored customers are the shipped example's


async def test_seed_stores_any_dataset_s_rows_and_draws_valid_synthetic_ones(
    database: Database, own_dataset: Dataset
) -> None:
    from sqlalchemy import select

    from churn_mlops.core.request_models import request_models
    from churn_mlops.db.models import Customer
    from churn_mlops.db.seed import seed_synthetic_customers

    seeded = await seed_dataset(database, own_dataset.subset(range(30)))
    synthetic = await seed_synthetic_customers(database, own_dataset, 200, batch_size=64)
    assert (seeded.total, synthetic.total) == (30, 230)
    features, sha256 = await _features(database, own_dataset.customer_ids[3])
    assert features == next(own_dataset.subset([3]).feature_rows())
    assert sha256 == own_dataset.schema.sha256
    model = request_models(own_dataset.schema).features
    async with database.sessions() as session:
        stored = (await session.scalars(select(Customer))).all()
    for customer in stored:  # every synthetic row passes the schema's own validation
        assert model.model_validate(customer.features).model_dump() == customer.features
    assert {c.schema_sha256 for c in stored} == {own_dataset.schema.sha256}
