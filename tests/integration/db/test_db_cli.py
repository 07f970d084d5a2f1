from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from benchmarks.servers import free_port
from churn_mlops.cli import app
from churn_mlops.db import schema
from churn_mlops.db.cli import upgrade_before_serving

pytestmark = pytest.mark.timeout(120)


def _run(*arguments: str) -> str:
    result = CliRunner().invoke(app, ["db", *arguments])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_db_commands_migrate_up_and_down(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    head = ", ".join(schema.head_revisions())
    assert _run("current", "--url", url) == (
        f"base (code needs {head}; NOT current: run `churn-mlops db upgrade`)"
    )
    assert _run("upgrade", "--url", url).endswith(f"is at {head}")
    assert _run("current", "--url", url) == f"{head} (code needs {head}; current)"
    assert _run("downgrade", "base", "--url", url).endswith("is at base")


def test_db_commands_read_the_url_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path}/from-env.db")
    _run("upgrade")
    assert (tmp_path / "from-env.db").is_file()


def test_upgrade_before_serving_migrates_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    upgrade_before_serving(url)
    assert anyio.run(schema.current_revision_of, url) == schema.head_revisions()


def test_upgrade_before_serving_reports_an_unreachable_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    upgrade_before_serving(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert "does not answer" in " ".join(capsys.readouterr().err.split())
