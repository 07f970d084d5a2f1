"""The `churn-mlops` command line."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from churn_mlops.db.cli import db_app, upgrade_before_serving
from churn_mlops.db.customers_cli import customers_app
from churn_mlops.db.outcomes_cli import outcomes_app
from churn_mlops.model.provisioning import (
    TrainingData,
    champion_model_dir,
    ensure_model,
    train_with_progress,
    training_source,
)
from churn_mlops.model.registry import ModelVersion
from churn_mlops.model.registry_cli import models_app
from churn_mlops.observability.cli import ProfiledPipeline, profile_command
from churn_mlops.observability.drift_cli import drift_app
from churn_mlops.security.cli import keys_app, users_app
from churn_mlops.settings import Settings

app = typer.Typer(
    name="churn-mlops",
    help="Train and serve the churn prediction service.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(outcomes_app, name="outcomes")
app.add_typer(drift_app, name="drift")
app.add_typer(customers_app, name="customers")
console = Console(stderr=True)


@dataclass(frozen=True)
class CliHooks:
    """What commands of lower layers get from here (`ctx.obj`): checks that need the database."""

    def promotion_check(self, version: ModelVersion) -> None:
        """`models promote` is refused if stored customers lack features the version reads and
        its schema has no default for (CHURN_DATABASE_URL's customers)."""
        from churn_mlops.db.stored_features import check_promotion

        check_promotion(Settings().database_url, version.path, version.version)


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = CliHooks()


@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Option(help="Training data, CSV or Parquet; default: the shipped Telco sample."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="The column that says whether a customer churned (two values)."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="The column that identifies a customer.")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            help="Schema file (YAML) overriding what is inferred: names, kinds, bounds, "
            "allowed values, unseen categories, defaults, dropped columns."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the search and the model.")] = 42,
    search_iterations: Annotated[int, typer.Option(min=1, help="Settings tried.")] = 16,
    cv_folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    promote: Annotated[
        bool, typer.Option(help="Make the trained version the champion that `serve` serves.")
    ] = False,
) -> None:
    """Train, tune and evaluate a model on any churn data, write its artifact directory (with
    the feature schema inferred from the data) and register it.

    Without --target or --schema the data must be in the Telco layout."""
    from churn_mlops.core.errors import ServiceError
    from churn_mlops.data import TrainingSource
    from churn_mlops.model.registry import CHAMPION, open_registry
    from churn_mlops.model.training import TrainingConfig

    settings = Settings()
    config = TrainingConfig(seed=seed, search_iterations=search_iterations, cv_folds=cv_folds)
    out_dir = out or settings.model_dir
    configured = training_source(settings)
    if data is not None:
        source = TrainingSource(data, target, id_column, schema)
    else:
        source = TrainingSource(
            configured.path,
            target or configured.target,
            id_column or configured.id_column,
            schema or configured.schema_file,
        )
    result = train_with_progress(source, out_dir, config)
    registry = open_registry(settings)
    registered = registry.register(out_dir, run_metrics={"cv_roc_auc": result.cv_roc_auc})
    if promote:
        try:
            CliHooks().promotion_check(registered)
        except ServiceError as error:
            console.print(f"Registered {registered.version}; [red]not promoted:[/] {error}")
            raise typer.Exit(2) from None
        registry.promote(registered.version, CHAMPION)
    role = " as the champion" if promote else ""
    console.print(f"Registered {registered.version} in {registry.location}{role}.")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(help="Also serve the Open Inference Protocol over gRPC on this port."),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes; default: cores.")] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Artifact to serve; default: the registry's champion."),
    ] = None,
) -> None:
    """Serve the prediction API with uvicorn (uvloop, httptools): the registry's champion, or
    an explicit artifact directory; on a first run, trains a model and makes it the champion."""
    import uvicorn

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "grpc_port": grpc_port,
        "workers": workers,
        "model_dir": model_dir.resolve() if model_dir else None,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    data = training_source(settings)
    if "model_dir" in settings.model_fields_set:  # --model-dir or CHURN_MODEL_DIR
        ensure_model(settings.model_dir, data, "serve")
        # Worker processes build their own Settings from the environment: hand them ours.
        os.environ["CHURN_MODEL_DIR"] = str(settings.model_dir.resolve())
        serving = f"model {settings.model_dir}"
    else:
        # Each worker follows the registry's champion (and challenger) from then on.
        serving = f"the champion of {_champion(settings, data)}"
    if settings.grpc_port is not None:
        # Every worker starts its own gRPC server on it (SO_REUSEPORT): hand them the port.
        os.environ["CHURN_GRPC_PORT"] = str(settings.grpc_port)
    if settings.database_url:
        upgrade_before_serving(settings.database_url)
    _announce_dev_key(settings)
    console.print(
        f"Serving {serving} on http://{settings.host}:{settings.port} "
        f"with {settings.workers} workers"
        + (f", gRPC on port {settings.grpc_port}" if settings.grpc_port is not None else "")
    )
    from churn_mlops.observability.logging import configure_logging
    from churn_mlops.observability.metrics import shared_metrics_dir

    # Our JSON logs in this process; each worker configures its own (create_app_from_env).
    configure_logging(settings.log_level, json=settings.log_json)
    # Before the workers start: they find the directory in PROMETHEUS_MULTIPROC_DIR.
    with shared_metrics_dir(settings.metrics_multiproc_dir, enabled=settings.metrics_enabled):
        uvicorn.run(
            "churn_mlops.api.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            # httptools with a deadline on the request head (api/server_protocol.py).
            http="churn_mlops.api.server_protocol:HeadTimeoutProtocol",
            limit_concurrency=connection_limit(settings.max_connections_per_worker),
            access_log=False,
            # Workers import scikit-learn and load the model before answering the health check.
            timeout_worker_healthcheck=30,
            timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
            log_level=settings.log_level.lower(),
            log_config=None,
        )


# Descriptors a worker keeps for what is not a client connection: its database pool, Redis,
# the metrics files, the spill file, the model's files.
RESERVED_DESCRIPTORS = 128


def connection_limit(wanted: int) -> int:
    """Raise this process's soft descriptor limit to the hard one (at most 65,536; workers
    inherit it) and bound the connections a worker accepts requests on below it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    available = wanted if soft == resource.RLIM_INFINITY else soft - RESERVED_DESCRIPTORS
    return max(16, min(wanted, available))


def _champion(settings: Settings, data: TrainingData) -> str:
    """Make sure the registry has a champion (see `champion_model_dir`); where it is."""
    from churn_mlops.core.errors import ServiceError
    from churn_mlops.model.registry import open_registry

    try:
        registry = open_registry(settings)
        champion_model_dir(registry, settings.model_dir, data)
        return registry.location
    except ServiceError as error:
        console.print(f"[red]refusing to serve:[/] {error.detail}")
        raise typer.Exit(2) from None


def _announce_dev_key(settings: Settings) -> None:
    """In development, make sure a development API key exists and say where it is."""
    from churn_mlops.security.dev_key import development_key

    try:
        found = development_key(settings)
    except Exception as error:  # the database may not answer: predictions still serve
        console.print(f"[yellow]no development API key ({error.__class__.__name__})[/]")
        return
    if found is None:
        return
    key, created = found
    state = "Created a development API key" if created else "Development API key"
    console.print(
        f"{state} (scopes predict, read, admin) in {settings.dev_api_key_file}; call with "
        f'-H "X-API-Key: $(cat {settings.dev_api_key_file})":\n{key}'
    )


def _pipeline_for_profiling(settings: Settings) -> ProfiledPipeline:
    """The serving pipeline, built as the app's lifespan builds it (no HTTP, no database)."""
    from churn_mlops.model.artifact import ModelArtifact
    from churn_mlops.runtime import build_pipeline

    return build_pipeline(ModelArtifact.load(settings.model_dir), settings)


app.command("profile")(profile_command(_pipeline_for_profiling))


if __name__ == "__main__":
    app()
