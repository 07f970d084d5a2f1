"""What the subcommands share: their options, declared once; the checks that turn the options'
text into values; and how a run that fails ends.

Every check raises `typer.BadParameter`, so a bad option stops the bench before it starts a
server or trains a model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.constants import RESULTS_ROOT
from benchmarks.load import LoadError, parse_duration
from benchmarks.plan import ALL_SERVERS
from benchmarks.servers import ServerError
from benchmarks.terminal import console
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.provisioning import ensure_model, training_source
from churn_mlops.settings import Settings

ModelDirOption = Annotated[
    Path | None, typer.Option(help="Artifact to serve; trained if missing. Default: settings.")
]
DurationOption = Annotated[str, typer.Option(help="Measured time per run: 10s, 1m ...")]
WarmupOption = Annotated[str, typer.Option(help="Unmeasured load before each run; 0 for none.")]
RoundsOption = Annotated[int, typer.Option(min=1, help="Repeats; the report gives medians.")]
OutOption = Annotated[
    Path | None,
    typer.Option(help=f"Results folder. Default: {RESULTS_ROOT}/<suite-timestamp>/."),
]
OnlyOption = Annotated[
    str, typer.Option(help=f"Comma-separated servers to run, of {','.join(ALL_SERVERS)}.")
]
ServiceEnvOption = Annotated[
    list[str] | None,
    typer.Option(
        help="KEY=VALUE for the service's environment (the cache suite's servers too, under "
        "their cache settings); repeatable; CHURN_CACHE_ENABLED=false unless given."
    ),
]
PriceOption = Annotated[
    float, typer.Option(min=0, help="USD per core-hour, for the cost per million requests.")
]
CacheConnectionsOption = Annotated[
    str, typer.Option(help="Comma-separated connection counts of the cache suite.")
]
HitRatioOption = Annotated[
    float,
    typer.Option(
        min=0, max=1, help="Target share of warm customers in the cache suite's mixed runs."
    ),
]
RedisUrlOption = Annotated[
    str,
    typer.Option(
        help="Redis of the L1 + L2 server; its keys get a prefix of their own and are "
        "deleted after the run (no FLUSHDB)."
    ),
]
BlocksOption = Annotated[
    int, typer.Option(min=1, help="Measured blocks per configuration, taking turns.")
]
BlockRequestsOption = Annotated[int, typer.Option(min=1, help="Requests per block.")]


def csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def connection_levels(text: str, option: str) -> list[int]:
    """Positive connection counts from `1,32,128`."""
    try:
        levels = [int(item) for item in csv(text)]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(
            "give positive integers like 1,32,128", param_hint=option
        ) from None
    return levels


def durations(duration: str, warmup: str) -> tuple[int, int]:
    """(measured, warm-up) seconds; a measured run lasts at least one second."""
    try:
        duration_s, warmup_s = parse_duration(duration), parse_duration(warmup)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if duration_s < 1:
        raise typer.BadParameter("runs last at least 1s", param_hint="--duration")
    return duration_s, warmup_s


def servers(only: str) -> list[str]:
    """The servers `--only` names, all of them known."""
    selected = csv(only)
    if unknown := sorted(set(selected) - set(ALL_SERVERS)):
        raise typer.BadParameter(f"unknown server(s) {', '.join(unknown)}", param_hint="--only")
    return selected


def service_env(pairs: Sequence[str], defaults: dict[str, str]) -> dict[str, str]:
    """`defaults`, updated with the `KEY=VALUE` pairs of `--service-env`."""
    env = dict(defaults)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--service-env")
        env[name] = value
    return env


def served_model(model_dir: Path | None) -> tuple[Path, ModelArtifact]:
    """The artifact directory to serve (settings' by default) and its model, trained if missing."""
    settings = Settings()
    served = (model_dir or settings.model_dir).resolve()
    return served, ensure_model(served, training_source(settings), "bench")


def results_dir(out: Path | None, suite: str, started: datetime | None = None) -> Path:
    """`out`, or a folder of its own under `bench-results/` for this suite and start time."""
    moment = (started or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return out or RESULTS_ROOT / f"{suite}-{moment}"


@contextmanager
def stops_cleanly() -> Iterator[None]:
    """A server that dies or a wrk that fails ends the bench with exit status 1 and one line."""
    try:
        yield
    except (ServerError, LoadError) as error:
        console.print(f"[red]bench stopped:[/] {error}")
        raise typer.Exit(1) from None
