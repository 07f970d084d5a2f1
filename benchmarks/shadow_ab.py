"""What scoring a challenger in shadow costs: the service with the challenger off and in
shadow mode, over HTTP, both logging to the same database (shadow mode records into the
prediction log), measured in turn by `benchmarks.http_ab`.

Both servers follow a registry of their own: the served model as champion and, as challenger,
the same trees with another decision threshold, so the challenger costs exactly what the
champion costs to score (a retrained model of the same size would cost the same).

    python -m benchmarks shadow-ab --database-url postgresql://...  [--rounds 5] [--cache]

Run it under `flock /tmp/churn-bench.lock` on a shared machine.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from benchmarks.constants import HOST
from benchmarks.http_ab import ab_table, run_servers_ab
from benchmarks.load import prediction_bodies
from benchmarks.servers import ServerSpec
from churn_mlops.data import load_telco_csv
from churn_mlops.db import schema
from churn_mlops.db.engine import Database
from churn_mlops.db.models import Prediction
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.model.registry import CHALLENGER, CHAMPION, LocalRegistry

MODES = {"shadow-off": "off", "shadow-on": "shadow"}


@dataclass(frozen=True)
class ShadowABOptions:
    database_url: str
    model_dir: Path
    rounds: int
    duration_s: int
    warmup_s: int
    connections: int
    workers: int
    cache: bool
    """The prediction cache on: every request after the warm-up is a hit, so the challenger's
    model call is most of what a request costs."""
    out: Path | None


def registry_with_challenger(model_dir: Path, root: Path) -> tuple[str, str]:
    """A registry under `root`: the model of `model_dir` as champion and, as challenger, its
    trees with half its threshold; (champion, challenger) versions."""
    registry = LocalRegistry(root)
    champion = registry.register(model_dir)
    registry.promote(champion.version, CHAMPION)
    served = ModelArtifact.load(model_dir)
    info = served.info.model_copy(update={"threshold": served.threshold / 2})
    twin = root.parent / "challenger"
    served.rebuilt(info).save(twin)
    challenger = registry.register(twin)
    registry.promote(challenger.version, CHALLENGER)
    return champion.version, challenger.version


def _server(name: str, registry: Path, workers: int, env: dict[str, str]) -> ServerSpec:
    argv = (sys.executable, "-m", "churn_mlops.cli", "serve", "--workers", str(workers))
    return ServerSpec(
        name,
        (*argv, "--host", HOST),
        workers,
        "/health/ready",
        {**env, "CHURN_MODEL_REGISTRY_DIR": str(registry), "CHURN_LOG_LEVEL": "INFO"},
    )


async def _shadow_rows(url: str, challenger: str) -> int:
    database = Database.from_url(url)
    try:
        async with database.engine.connect() as connection:
            count = await connection.execute(
                select(func.count(Prediction.id)).where(Prediction.challenger_version == challenger)
            )
            return int(count.scalar_one())
    finally:
        await database.dispose()


def run_shadow_ab(options: ShadowABOptions) -> list[str]:
    """Both servers under wrk in turn; the table of medians and the shadow rows logged."""
    schema.upgrade(options.database_url)
    out = options.out or Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-shadow-registry-") as work:
        registry = Path(work) / "models"
        _, challenger = registry_with_challenger(options.model_dir, registry)
        before = asyncio.run(_shadow_rows(options.database_url, challenger))
        common = {
            "CHURN_DATABASE_URL": options.database_url,
            "CHURN_AUTH_ENABLED": "false",
            "CHURN_CACHE_ENABLED": "true" if options.cache else "false",
        }
        specs = {
            name: _server(
                name, registry, options.workers, {**common, "CHURN_CHALLENGER_MODE": mode}
            )
            for name, mode in MODES.items()
        }
        runs = run_servers_ab(
            specs,
            out,
            prediction_bodies(load_telco_csv(), 7043),
            connections=[options.connections],
            rounds=options.rounds,
            duration_s=options.duration_s,
            warmup_s=options.warmup_s,
        )
        logged = asyncio.run(_shadow_rows(options.database_url, challenger)) - before
    answered = sum(run.answered for run in runs if run.server == "shadow-on")
    return [
        *ab_table(runs, "shadow-on", "shadow-off"),
        f"rows scored in shadow and logged: {logged:,} (wrk counted {answered:,} answers)",
    ]
