"""`churn-mlops models`: the model registry (local, or MLflow's) from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from churn_mlops.core.errors import ServiceError
from churn_mlops.model.registry import CHAMPION, ModelRegistry, ModelVersion, open_registry
from churn_mlops.settings import Settings

models_app = typer.Typer(
    help="Manage registered model versions and the aliases (champion, challenger) naming them.",
    no_args_is_help=True,
)
console = Console(stderr=True)

AliasOption = Annotated[str, typer.Option("--alias", help="The alias to change.")]


PromotionCheck = Callable[[ModelVersion], None]
"""Raises a ServiceError if a version may not be promoted."""


def _registry() -> ModelRegistry:
    return open_registry(Settings())


def _fail(error: ServiceError) -> typer.Exit:
    console.print(f"[red]{error.detail}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _names_by_version(registry: ModelRegistry) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for alias, version in registry.aliases().items():
        names.setdefault(version, []).append(alias)
    return names


def _versions_table(versions: list[ModelVersion], names: dict[str, list[str]]) -> Table:
    table = Table()
    table.add_column("version", no_wrap=True)
    table.add_column("created_at", no_wrap=True)
    table.add_column("hold-out ROC AUC")
    table.add_column("aliases")
    for model in versions:
        table.add_row(
            model.version,
            model.info.created_at,
            f"{model.info.holdout_metrics.roc_auc:.4f}",
            ", ".join(names.get(model.version, [])),
        )
    return table


def _aliases_table(registry: ModelRegistry) -> Table:
    table = Table("alias", "version", "rollback to")
    for alias, version in registry.aliases().items():
        earlier = [v for v, _ in registry.history(alias) if v != version]
        table.add_row(alias, version, earlier[-1] if earlier else "")
    return table


@models_app.command("list")
def list_models() -> None:
    """List registered versions: version, created, hold-out ROC AUC and the aliases naming it."""
    registry = _registry()
    try:
        versions = registry.versions()
        names = _names_by_version(registry)
    except ServiceError as error:
        raise _fail(error) from None
    Console().print(_versions_table(versions, names))
    console.print(f"{len(versions)} version(s) in {registry.location}")


@models_app.command("show")
def show_model(version: Annotated[str, typer.Argument(help="The version to describe.")]) -> None:
    """Show one version's metadata."""
    registry = _registry()
    try:
        model = registry.get(version)
        names = _names_by_version(registry).get(version, [])
    except ServiceError as error:
        raise _fail(error) from None
    info = model.info
    table = Table("field", "value")
    rows = {
        "version": info.version,
        "aliases": ", ".join(names),
        "path": str(model.path),
        "created_at": info.created_at,
        **{f"hold-out {k}": f"{v:.4f}" for k, v in info.holdout_metrics.model_dump().items()},
        "threshold": f"{info.threshold:.4f} ({info.threshold_method})",
        "hyperparameters": json.dumps(info.hyperparameters, sort_keys=True),
        "training_data_sha256": info.training_data_sha256,
        "training / hold-out rows": f"{info.training_rows} / {info.holdout_rows}",
        "model_sha256": info.model_sha256,
        "library_versions": ", ".join(f"{k} {v}" for k, v in info.library_versions.items()),
    }
    for field, value in rows.items():
        table.add_row(field, value)
    Console().print(table)


@models_app.command("register")
def register_model(
    directory: Annotated[Path, typer.Argument(help="The artifact directory to add.")],
) -> None:
    """Verify an artifact directory and copy it in; prints the version last, on stdout."""
    registry = _registry()
    try:
        model = registry.register(directory)
        names = _names_by_version(registry)
    except ServiceError as error:
        raise _fail(error) from None
    console.print(_versions_table([model], names))
    console.print(f"Registered {model.version} in {model.path}")
    sys.stdout.write(model.version + "\n")
    sys.stdout.flush()


@models_app.command("promote")
def promote_model(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The version the alias will name.")],
    alias: AliasOption = CHAMPION,
) -> None:
    """Point an alias (champion by default) at a registered version; refused if stored
    customers lack features it reads and its schema has no default for."""
    registry = _registry()
    # The root command hands in the checks of layers above this one (the stored customers).
    check: PromotionCheck | None = getattr(ctx.obj, "promotion_check", None)
    try:
        before = registry.resolve(alias)
        if check is not None:
            check(registry.get(version))
        registry.promote(version, alias)
        table = _aliases_table(registry)
    except ServiceError as error:
        raise _fail(error) from None
    Console().print(table)
    was = f" (was {before.version})" if before else ""
    console.print(f"{alias} is now {version}{was}")


@models_app.command("rollback")
def rollback_model(alias: AliasOption = CHAMPION) -> None:
    """Point an alias (champion by default) back at the version it named before."""
    registry = _registry()
    try:
        before = registry.resolve(alias)
        restored = registry.rollback(alias)
        table = _aliases_table(registry)
    except ServiceError as error:
        raise _fail(error) from None
    Console().print(table)
    was = f" (was {before.version})" if before else ""
    console.print(f"{alias} is back to {restored.version}{was}")


@models_app.command("unset")
def unset_alias(alias: Annotated[str, typer.Argument(help="The alias to clear.")]) -> None:
    """Make an alias name no version (ends a challenger's shadow or canary); rollback undoes it."""
    registry = _registry()
    try:
        version = registry.remove_alias(alias)
        table = _aliases_table(registry)
    except ServiceError as error:
        raise _fail(error) from None
    Console().print(table)
    console.print(f"{alias} no longer names a version (was {version})")
