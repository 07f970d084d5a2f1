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

from churn_mlops.core.schema import FeatureSchema, FeatureSpec
from churn_mlops.data import SHIPPED_DATASET, DatasetError, TrainingSource
from churn_mlops.model.artifact import (
    ENCODER_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelArtifact,
)
from churn_mlops.model.registry import CHAMPION, ModelRegistry
from churn_mlops.settings import Settings

if TYPE_CHECKING:
    from churn_mlops.model.training import TrainingConfig, TrainingResult

console = Console(stderr=True)

_STAGES = {"search": "Cross-validated search", "fit": "Final fit"}


TrainingData = Path | TrainingSource
"""A training file in the Telco layout, or a file with its target, id and schema file."""


def training_source(settings: Settings) -> TrainingSource:
    """The training data `settings` name (CHURN_DATA_*), or the shipped Telco sample."""
    return TrainingSource(
        settings.data_path or SHIPPED_DATASET,
        settings.data_target,
        settings.data_id_column,
        settings.data_schema,
    )


def train_with_progress(
    data: TrainingData, out: Path, config: TrainingConfig | None = None
) -> TrainingResult:
    # Imported here: scikit-learn's training modules take seconds to import, serving needs none.
    from churn_mlops.model.training import TrainingConfig, train_model

    source = data if isinstance(data, TrainingSource) else TrainingSource(data)
    try:
        dataset = source.load()
    except (OSError, DatasetError) as error:
        console.print(f"[red]cannot read training data:[/] {error}")
        raise typer.Exit(2) from None
    console.print(
        f"Training on {len(dataset)} customers from {source.path} "
        f"({sum(dataset.churned)} churned, target {dataset.schema.target.column}="
        f"{dataset.schema.target.positive})"
    )
    _print_schema(dataset.schema)
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


def _accepts(spec: FeatureSpec) -> str:
    if spec.kind == "categorical":
        shown = ", ".join(spec.values[:4]) + (", ..." if len(spec.values) > 4 else "")
        unseen = "unseen: missing" if spec.unknown == "missing" else "unseen: refused"
        return f"{len(spec.values)} values ({shown}); {unseen}"
    if spec.kind == "boolean":
        return "true, false"
    return f"{spec.minimum} to {spec.maximum}" + (" (or true/false)" if spec.is_flag else "")


def _print_schema(schema: FeatureSchema) -> None:
    table = Table(title=f"Feature schema ({len(schema.features)} features, {schema.sha256[:12]})")
    for column in ("feature", "column", "kind", "accepts", "nullable"):
        table.add_column(column)
    for spec in schema.features:
        nullable = "yes" if spec.nullable else "no"
        table.add_row(spec.name, spec.column, spec.kind, _accepts(spec), nullable)
    Console().print(table)


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


def ensure_model(model_dir: Path, data: TrainingData, purpose: str) -> ModelArtifact:
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


def champion_model_dir(registry: ModelRegistry, model_dir: Path, data: TrainingData) -> Path:
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
