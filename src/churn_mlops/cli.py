"""The `churn-mlops` command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from churn_mlops.data import SHIPPED_DATASET, DatasetError, load_telco_csv
from churn_mlops.model.artifact import ArtifactError, ModelArtifact
from churn_mlops.settings import Settings

if TYPE_CHECKING:
    from churn_mlops.model.training import TrainingConfig, TrainingResult

app = typer.Typer(
    name="churn-mlops",
    help="Train, serve and benchmark the churn prediction service.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

_STAGES = {"search": "Cross-validated search", "fit": "Final fit"}


def _train(data: Path, out: Path, config: TrainingConfig | None = None) -> TrainingResult:
    # Imported here: scikit-learn's training modules take seconds to import, serving needs none.
    from churn_mlops.model.training import TrainingConfig, train_model

    try:
        dataset = load_telco_csv(data)
    except (OSError, DatasetError) as error:
        console.print(f"[red]cannot read training data:[/] {error}")
        raise typer.Exit(2) from None
    console.print(f"Training on {len(dataset)} customers from {data}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(_STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done)

        result = train_model(dataset, config or TrainingConfig(), progress=report)
    result.artifact.save(out)
    _print_metrics(result, out)
    return result


def _print_metrics(result: TrainingResult, out: Path) -> None:
    info = result.artifact.info
    table = Table(title=f"Model {info.version} (hold-out: {info.holdout_rows} customers)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    metrics = info.holdout_metrics
    table.add_row("ROC AUC", f"{metrics.roc_auc:.4f}")
    table.add_row("ROC AUC, default settings", f"{result.default_holdout_roc_auc:.4f}")
    table.add_row("ROC AUC, cross-validated (train)", f"{result.cv_roc_auc:.4f}")
    table.add_row("PR AUC", f"{metrics.pr_auc:.4f}")
    table.add_row("log loss", f"{metrics.log_loss:.4f}")
    table.add_row("Brier score", f"{metrics.brier:.4f}")
    table.add_row("decision threshold", f"{info.threshold:.4f}")
    table.add_row("trees", str(info.hyperparameters["n_trees"]))
    Console().print(table)
    console.print(f"Artifact written to {out}")


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Option(help="Telco-layout CSV; default: the shipped one.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the search and the model.")] = 42,
    search_iterations: Annotated[int, typer.Option(min=1, help="Settings tried.")] = 16,
    cv_folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
) -> None:
    """Train, tune and evaluate a model and write its artifact directory."""
    from churn_mlops.model.training import TrainingConfig

    settings = Settings()
    config = TrainingConfig(seed=seed, search_iterations=search_iterations, cv_folds=cv_folds)
    _train(data or settings.data_path or SHIPPED_DATASET, out or settings.model_dir, config)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes; default: cores.")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Artifact to serve.")] = None,
) -> None:
    """Serve the prediction API with uvicorn (uvloop, httptools); trains a model if none exists."""
    import uvicorn

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "model_dir": model_dir.resolve() if model_dir else None,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        ModelArtifact.load(settings.model_dir)
    except ArtifactError as error:
        if any((settings.model_dir / name).exists() for name in ("metadata.json", "model.joblib")):
            console.print(f"[red]refusing to serve:[/] {error}")
            raise typer.Exit(2) from None
        console.print(f"No model at {settings.model_dir}: training one first.")
        _train(settings.data_path or SHIPPED_DATASET, settings.model_dir)
    # Worker processes build their own Settings from the environment: hand them our overrides.
    os.environ["CHURN_MODEL_DIR"] = str(settings.model_dir.resolve())
    console.print(
        f"Serving on http://{settings.host}:{settings.port} with {settings.workers} workers"
    )
    uvicorn.run(
        "churn_mlops.serving.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        # Workers import scikit-learn and load the model before answering the health check.
        timeout_worker_healthcheck=30,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    app()
