"""`churn-mlops train` on data that is not Telco: a CSV with a schema file, a Parquet file with
--target and --id, and the errors a team sees for data it cannot train on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.own_data import HEADER, OWN_FEATURES, own_rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

QUICK = ["--search-iterations", "2", "--cv-folds", "2"]


def _train(tmp_path: Path, *options: str) -> tuple[int, str]:
    runner = CliRunner()
    env = {"CHURN_MODEL_REGISTRY_DIR": str(tmp_path / "registry"), "COLUMNS": "200"}
    out = ["--out", str(tmp_path / "model")]
    result = runner.invoke(app, ["train", *options, *out, *QUICK], env=env)
    return result.exit_code, result.output


def test_a_csv_with_a_schema_file_trains_a_model_of_its_own_columns(
    own_data_dir: Path, tmp_path: Path
) -> None:
    data, schema = own_data_dir / "customers.csv", own_data_dir / "schema.yaml"
    code, output = _train(tmp_path, "--data", str(data), "--schema", str(schema))
    assert code == 0, output
    artifact = ModelArtifact.load(tmp_path / "model")
    assert artifact.schema.names == OWN_FEATURES
    assert "Feature schema (6 features" in output
    assert "Paid seats" not in output  # descriptions stay in the schema, not the table
    assert "1 to 100000" in output  # the schema file's bounds
    assert "unseen: missing" in output
    assert f"Registered {artifact.version}" in output


def test_a_parquet_file_with_target_and_id_options(tmp_path: Path) -> None:
    rows = own_rows(600)
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "Account ID": pa.array(columns[0], pa.string()),
            "Region": pa.array(columns[1], pa.string()),
            "Plan": pa.array([p or None for p in columns[2]], pa.string()),
            "Seats": pa.array(columns[3], pa.int64()),
            "MonthlySpend": pa.array(columns[4], pa.float64()),
            "LoginsLast30d": pa.array([v if v != "" else None for v in columns[5]], pa.int32()),
            "HasSupportContract": pa.array([v == "true" for v in columns[6]], pa.bool_()),
            "Churned": pa.array([bool(v) for v in columns[7]], pa.bool_()),
        }
    )
    assert table.column_names == HEADER
    pq.write_table(table, tmp_path / "customers.parquet")
    code, output = _train(
        tmp_path,
        "--data",
        str(tmp_path / "customers.parquet"),
        "--target",
        "Churned",
        "--id",
        "Account ID",
    )
    assert code == 0, output
    schema = ModelArtifact.load(tmp_path / "model").schema
    kinds = {spec.name: (spec.kind, spec.nullable) for spec in schema.features}
    assert kinds == {
        "region": ("categorical", False),
        "plan": ("categorical", True),
        "seats": ("integer", False),
        "monthly_spend": ("number", False),
        "logins_last30d": ("integer", True),
        "has_support_contract": ("boolean", False),
    }
    assert (schema.target.positive, schema.target.negative) == ("true", "false")
    assert schema.example_id == "ACC-00000"


def test_data_not_in_the_telco_layout_needs_a_target(own_data_dir: Path, tmp_path: Path) -> None:
    code, output = _train(tmp_path, "--data", str(own_data_dir / "customers.csv"))
    assert code == 2
    assert "missing columns" in output
    assert "--target" in output


def test_a_bad_cell_is_named_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    lines = [",".join(HEADER), *(",".join(map(str, row)) for row in own_rows(50))]
    lines[3] = lines[3].replace(lines[3].split(",")[3], "many", 1)
    path.write_text("\n".join(lines) + "\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text("target: Churned\nid: Account ID\nfeatures:\n  Seats: {kind: integer}\n")
    code, output = _train(tmp_path, "--data", str(path), "--schema", str(schema))
    assert code == 2
    assert "line 4: Seats='many' is not a number" in output


def test_a_schema_file_with_an_unknown_key_is_refused(own_data_dir: Path, tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text("target: Churned\nfeatures:\n  Seats: {maximun: 10}\n")
    code, output = _train(
        tmp_path, "--data", str(own_data_dir / "customers.csv"), "--schema", str(schema)
    )
    assert code == 2
    assert "'Seats' has unknown keys ['maximun']" in output
