"""`churn-mlops drift report` on SQLite and PostgreSQL: a known drifted sample (tenure halved,
every contract month-to-month) written into the prediction log with its features; the PSI the
report gives equals a direct computation, the drifted features are flagged, rows of another
version or outside the window are left out; and the errors say what to do."""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from churn_mlops.cli import app
from churn_mlops.data import TelcoDataset
from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Customer
from churn_mlops.db.prediction_log import SqlPredictionSink, identify
from churn_mlops.db.prediction_log.features import encode_rows
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.drift_profile import FeatureBins
from churn_mlops.model.features import FloatMatrix
from churn_mlops.model.inference import ChurnPredictor
from churn_mlops.model.registry import CHAMPION, LocalRegistry
from churn_mlops.observability.drift_html import render_report
from churn_mlops.observability.drift_report import (
    DriftReportError,
    compare,
    parse_since,
    profile_of,
    read_sample,
)
from tests.fixtures.outcomes import empty_tables

pytestmark = pytest.mark.timeout(180)
SAMPLE_ROWS = 1500
EPSILON = 1e-4


def drifted_rows(artifact: ModelArtifact, dataset: TelcoDataset, count: int) -> FloatMatrix:
    """Real customers, encoded, with tenure halved and every contract month-to-month."""
    rows = []
    for features in list(dataset.feature_rows())[:count]:
        changed = {**features, "tenure": features["tenure"] // 2, "contract": "Month-to-month"}
        rows.append(artifact.encoder.encode_row(changed))
    return np.concatenate(rows)


def direct_psi(bins: FeatureBins, column: np.ndarray) -> float:
    """PSI written out: bin `i` of a number holds (edges[i-1], edges[i]] (np.digitize), then
    one for missing; a category its code, then one for unseen or missing; proportions floored
    at 1e-4; sum of (a - e) ln(a / e)."""
    values = column.astype(np.float64)
    if bins.kind == "numeric":
        size = len(bins.edges) + 2
        index = np.digitize(values, np.asarray(bins.edges), right=True)
        index[np.isnan(values)] = size - 1
    else:
        size = len(bins.categories) + 1
        index = np.array(
            [int(v) if not np.isnan(v) and 0 <= v < size - 1 else size - 1 for v in values]
        )
    actual = np.maximum(np.bincount(index, minlength=size) / len(values), EPSILON)
    expected = np.maximum(np.asarray(bins.expected), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


async def log_rows(
    database: Database,
    rows: FloatMatrix,
    probabilities: np.ndarray,
    version: str,
    created_at: float,
    *,
    with_features: bool = True,
) -> None:
    prefix = uuid.uuid4().hex[:8]
    blobs: list[bytes | None] = list(encode_rows(rows)) if with_features else [None] * len(rows)
    recorded = [
        (f"{prefix}-{n}", version, float(p), p >= 0.5, False, 1.0, created_at, None, None, blob)
        for n, (p, blob) in enumerate(zip(probabilities.tolist(), blobs, strict=True))
    ]
    sink = SqlPredictionSink.for_engine(database.engine)
    try:
        assert await sink.write(identify(recorded)) == len(rows)
    finally:
        await sink.close()


@pytest.fixture
def sample(artifact: ModelArtifact, dataset: TelcoDataset) -> tuple[FloatMatrix, np.ndarray]:
    rows = drifted_rows(artifact, dataset, SAMPLE_ROWS)
    return rows, np.asarray(ChurnPredictor(artifact).probabilities(rows), dtype=np.float64)


async def _log_drifted(
    url: str, artifact: ModelArtifact, dataset: TelcoDataset, sample: tuple[FloatMatrix, Any]
) -> None:
    rows, probabilities = sample
    now = time.time()
    plain = np.concatenate(
        [artifact.encoder.encode_row(f) for f in list(dataset.feature_rows())[:300]]
    )
    plain_scores = np.asarray(ChurnPredictor(artifact).probabilities(plain), dtype=np.float64)
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        await log_rows(database, rows, probabilities, artifact.version, now - 3600)
        await log_rows(database, plain, plain_scores, "v000000000000", now - 3600)
        await log_rows(database, plain, plain_scores, artifact.version, now - 30 * 86400)
    finally:
        await database.dispose()


@pytest.fixture
def drifted_log(
    migrated_database_url: str,
    artifact: ModelArtifact,
    dataset: TelcoDataset,
    sample: tuple[FloatMatrix, np.ndarray],
) -> str:
    """The drifted sample logged an hour ago by the artifact's version; undrifted rows logged
    by another version, and a month ago, which the report must leave out."""
    asyncio.run(_log_drifted(migrated_database_url, artifact, dataset, sample))
    return migrated_database_url


async def _log_without_features(
    url: str, artifact: ModelArtifact, sample: tuple[FloatMatrix, Any]
) -> None:
    rows, probabilities = sample
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        await log_rows(
            database, rows[:50], probabilities[:50], artifact.version, time.time(),
            with_features=False,
        )  # fmt: skip
    finally:
        await database.dispose()


def _no_progress(stage: str, done: int, total: int | None) -> None:
    assert done >= 0


@pytest.mark.anyio
async def test_the_reports_psi_equals_a_direct_computation(
    drifted_log: str,
    artifact: ModelArtifact,
    sample: tuple[FloatMatrix, np.ndarray],
) -> None:
    rows, probabilities = sample
    profile = profile_of(artifact)
    since = parse_since("7d")
    read = await read_sample(drifted_log, artifact, since, "log", _no_progress)
    assert (len(read.rows), read.logged_rows) == (SAMPLE_ROWS, SAMPLE_ROWS)

    report = compare(profile, read, model_version=artifact.version, since=since, source="log")

    by_name = {feature.name: feature for feature in report.features}
    for index, bins in enumerate(profile.features):
        assert by_name[bins.name].psi == pytest.approx(direct_psi(bins, rows[:, index]), abs=1e-12)
    expected_prediction = direct_psi(profile.prediction, probabilities)
    assert report.prediction.psi == pytest.approx(expected_prediction, abs=1e-12)
    shown = [feature.psi for feature in report.features]
    assert shown == sorted(shown, reverse=True)
    assert {"tenure", "contract"} <= set(report.drifted)
    assert by_name["gender"].status == "ok"
    assert report.prediction.status == "drift"  # month-to-month short-tenure customers churn


def _psi_rows(html: str) -> list[tuple[str, float, str]]:
    pattern = (
        r'<tr><td>(\w+)</td><td>\w+</td><td class="num">([0-9.]+)</td>'
        r'\s*<td class="status \w+">(\w+)</td>'
    )
    return [(name, float(psi), status) for name, psi, status in re.findall(pattern, html)]


@pytest.fixture
def cli_env(migrated_database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CHURN_DATABASE_URL": migrated_database_url,
        "CHURN_MODEL_REGISTRY_DIR": str(tmp_path / "registry"),
    }


def test_the_command_writes_the_html_report(
    drifted_log: str,
    cli_env: dict[str, str],
    artifact: ModelArtifact,
    artifact_dir: Path,
    sample: tuple[FloatMatrix, np.ndarray],
    tmp_path: Path,
) -> None:
    rows, _ = sample
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        ["drift", "report", "--since", "7d", "--out", str(out), "--model", str(artifact_dir)],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    table = _psi_rows(html)
    profile = profile_of(artifact)
    direct = {
        bins.name: direct_psi(bins, rows[:, index]) for index, bins in enumerate(profile.features)
    }
    assert sorted(name for name, _, _ in table) == sorted(direct)
    shown = [psi for _, psi, _ in table]
    assert shown == sorted(shown, reverse=True)
    for name, psi, status in table:
        assert psi == pytest.approx(direct[name], abs=5e-5)  # shown with 4 decimals
        assert status == (
            "drift" if direct[name] > 0.2 else "watch" if direct[name] >= 0.1 else "ok"
        )
    prediction = re.search(r"Prediction distribution: PSI ([0-9.]+)", html)
    assert prediction is not None
    assert float(prediction.group(1)) == pytest.approx(
        direct_psi(profile.prediction, sample[1]), abs=5e-5
    )
    assert html.count('src="data:image/png;base64,') == len(FEATURE_NAMES) + 1
    assert not re.search(r"(src|href)=\"(?!data:)", html)  # self-contained
    assert f"model {artifact.version}: {SAMPLE_ROWS:,} rows since" in result.stdout
    assert "Report written to" in result.stdout


def test_no_logged_features_is_an_error_naming_the_setting(
    migrated_database_url: str,
    cli_env: dict[str, str],
    artifact: ModelArtifact,
    artifact_dir: Path,
    sample: tuple[FloatMatrix, np.ndarray],
    tmp_path: Path,
) -> None:
    asyncio.run(_log_without_features(migrated_database_url, artifact, sample))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["drift", "report", "--out", str(out), "--model", str(artifact_dir)], env=cli_env
    )
    assert result.exit_code == 1
    assert "none of the 50 predictions" in result.output
    assert "CHURN_LOG_FEATURES=true" in result.output
    assert not out.exists()


def test_a_model_without_a_profile_is_an_error(
    artifact: ModelArtifact, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    older = ModelArtifact.build(
        artifact.estimator,
        artifact.encoder,
        artifact.info,
        schema=artifact.schema,
        parity_rows=artifact.parity_rows,
    )
    older.save(tmp_path / "older")
    with pytest.raises(DriftReportError, match="no reference profile"):
        profile_of(ModelArtifact.load(tmp_path / "older"))
    result = CliRunner().invoke(
        app, ["drift", "report", "--model", str(tmp_path / "older")], env=cli_env
    )
    assert result.exit_code == 1
    assert "no reference profile" in result.output


def test_without_matplotlib_the_error_names_the_extra(
    artifact: ModelArtifact,
    sample: tuple[FloatMatrix, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from churn_mlops.observability.drift_report import DriftSample

    rows, probabilities = sample
    report = compare(
        profile_of(artifact),
        DriftSample(rows, probabilities),
        model_version=artifact.version,
        since=parse_since("1d"),
        source="log",
    )
    # A None entry makes `import matplotlib` raise ImportError, as when it is not installed.
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DriftReportError, match=re.escape("pip install 'churn-mlops[drift]'")):
        render_report(report)


async def _store_customers(url: str, dataset: TelcoDataset, count: int) -> list[dict[str, Any]]:
    """`count` real customers, drifted like the logged sample, stored as customers."""
    stored = [
        {**features, "tenure": features["tenure"] // 2, "contract": "Month-to-month"}
        for features in list(dataset.feature_rows())[:count]
    ]
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        async with database.engine.begin() as connection:
            await connection.execute(
                insert(Customer),
                [
                    {"external_id": f"c-{n}", "features": row, "schema_sha256": "telco"}
                    for n, row in enumerate(stored)
                ],
            )
    finally:
        await database.dispose()
    return stored


@pytest.mark.anyio
async def test_stored_customers_are_encoded_scored_and_compared(
    migrated_database_url: str, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    stored = await _store_customers(migrated_database_url, dataset, 400)
    since = parse_since("1d")
    read = await read_sample(migrated_database_url, artifact, since, "customers", _no_progress)

    expected = np.concatenate([artifact.encoder.encode_row(row) for row in stored])
    assert read.customer_rows == 400
    # Row order is the database's: compare as sorted rows.
    np.testing.assert_array_equal(np.unique(read.rows, axis=0), np.unique(expected, axis=0))
    scores = np.asarray(ChurnPredictor(artifact).probabilities(read.rows), dtype=np.float64)
    np.testing.assert_array_equal(read.probabilities, scores)
    report = compare(
        profile_of(artifact), read, model_version=artifact.version, since=since, source="customers"
    )
    tenure = FEATURE_NAMES.index("tenure")
    by_name = {feature.name: feature for feature in report.features}
    tenure_bins = profile_of(artifact).features[tenure]
    assert by_name["tenure"].psi == pytest.approx(
        direct_psi(tenure_bins, expected[:, tenure]), abs=1e-12
    )
    assert {"tenure", "contract"} <= set(report.drifted)

    with pytest.raises(DriftReportError, match="no stored customer was created or updated"):
        await read_sample(
            migrated_database_url, artifact, parse_since("2030-01-01"), "customers", _no_progress
        )


def test_the_served_champion_is_reported_unless_a_version_is_named(
    drifted_log: str, cli_env: dict[str, str], artifact_dir: Path, tmp_path: Path
) -> None:
    registry = LocalRegistry(Path(cli_env["CHURN_MODEL_REGISTRY_DIR"]))
    runner = CliRunner()
    refused = runner.invoke(
        app, ["drift", "report", "--out", str(tmp_path / "r.html")], env=cli_env
    )
    assert refused.exit_code == 1
    assert "no model is served yet" in refused.output

    version = registry.register(artifact_dir).version
    registry.promote(version, CHAMPION)
    served = runner.invoke(app, ["drift", "report", "--out", str(tmp_path / "a.html")], env=cli_env)
    named = runner.invoke(
        app, ["drift", "report", "--model", version, "--out", str(tmp_path / "b.html")], env=cli_env
    )
    unknown = runner.invoke(app, ["drift", "report", "--model", "v0123456789ab"], env=cli_env)

    assert served.exit_code == 0, served.output
    assert f"model {version}: {SAMPLE_ROWS:,} rows" in served.stdout
    assert named.exit_code == 0, named.output
    assert _psi_rows((tmp_path / "a.html").read_text()) == _psi_rows(
        (tmp_path / "b.html").read_text()
    )
    assert unknown.exit_code == 1
    assert "v0123456789ab" in unknown.output


async def _log_malformed(url: str, version: str) -> None:
    database = Database.from_url(url)
    try:
        await empty_tables(database)
        rows = identify([("c", version, 0.5, True, False, 1.0, time.time(), None, None, bytes(72))])
        sink = SqlPredictionSink.for_engine(database.engine)
        await sink.write(rows)
        await sink.close()
    finally:
        await database.dispose()


def test_a_logged_row_of_another_width_is_an_error(
    migrated_database_url: str, cli_env: dict[str, str], artifact: ModelArtifact, artifact_dir: Path
) -> None:
    asyncio.run(_log_malformed(migrated_database_url, artifact.version))
    result = CliRunner().invoke(app, ["drift", "report", "--model", str(artifact_dir)], env=cli_env)
    assert result.exit_code == 1
    assert "72 bytes, not 76" in result.output
