from __future__ import annotations

import pytest
from typer.testing import CliRunner

from churn_mlops.cli import app


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--only", "naive,nginx"], "unknown server(s) nginx"),
        (["--connections", "1,0"], "give positive integers like 1,32,128"),
        (["--connections", "many"], "give positive integers like 1,32,128"),
        (["--duration", "0s"], "runs last at least 1s"),
        (["--warmup", "soon"], "'soon' is not a duration like 10s, 2m or 1h"),
        (["--service-env", "CHURN_CACHE_ENABLED"], "'CHURN_CACHE_ENABLED' is not KEY=VALUE"),
        (["--suite", "warm"], "'warm' is not one of default, cache, all"),
        (["--cache-connections", "32,0"], "give positive integers like 1,32,128"),
        (["--hit-ratio", "1.5"], "Input should be less than or equal to 1"),
        (
            ["--suite", "cache", "--service-env", "CHURN_CACHE_ENABLED=true"],
            "the cache suite needs the cache off",
        ),
        (["--suite", "cache", "--only", "asgi"], "nothing to run"),
    ],
)
def test_bench_refuses_bad_options_before_starting_anything(
    arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["bench", *arguments])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
