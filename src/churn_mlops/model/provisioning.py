"""Model provisioning as the CLI commands show it: training with progress bars and a metrics
table, the "serve what is there, train what is missing" rule shared by `serve` and the bench,
and which registered version `serve` serves when no directory is named."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

from churn_mlops.data import DatasetError, load_telco_csv
from churn_mlops.model.artifact import (
    ENCODER_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelArtifact,
)
from churn_mlops.model.registry import CHAMPION, ModelRegistry

if TYPE_CHECKING:
    from churn_mlops.model.training import TrainingConfig, TrainingResult

console = Console(stderr=True)

_STAGES = {"search": "Cross-validated search", "fit": "Final fit"}


def train_with_progress(
    data: Path, out: Path, config: TrainingConfig | None = None
) -> TrainingResult:
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


def ensure_model(model_dir: Path, data: Path, purpose: str) -> ModelArtifact:
    """The artifact in `model_dir`; trained from `data` first when the directory holds none.

    A directory that holds an artifact which does not load is refused, never overwritten.
    """
    try:
        return ModelArtifact.load(model_dir)
    except ArtifactError as error:
        if any((model_dir / name).exists() for name in (METADATA_FILE, MODEL_FILE, ENCODER_FILE)):
            console.print(f"[red]refusing to {purpose}:[/] {error}")
            raise typer.Exit(2) from None
    console.print(f"No model at {model_dir}: training one first.")
    return train_with_progress(data, model_dir).artifact


def champion_model_dir(registry: ModelRegistry, model_dir: Path, data: Path) -> Path:
    """The artifact directory of the registry's champion. On a first run (no champion yet) the
    artifact in `model_dir`, trained from `data` if missing, is registered and promoted."""
    champion = registry.resolve(CHAMPION)
    if champion is not None:
        return champion.path
    ensure_model(model_dir, data, "serve")
    registered = registry.register(model_dir)
    registry.promote(registered.version)
    console.print(f"Registered {registered.version} in {registry.location} as the champion.")
    return registered.path
