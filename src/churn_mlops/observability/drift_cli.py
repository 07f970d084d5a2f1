"""`churn-mlops drift report`: the drift report of the serving model, as an HTML file.

    churn-mlops drift report --since 7d [--out report.html] [--model VERSION]
                             [--source log|customers|both]

The database is the configured one (`CHURN_DATABASE_URL`: the embedded SQLite file by default,
or PostgreSQL). The model is the one `serve` serves: the artifact of `CHURN_MODEL_DIR` when it
is set, else the registry's champion; `--model` names a registered version (or an artifact
directory) instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from churn_mlops.core.errors import ServiceError
from churn_mlops.model.artifact import ArtifactError, ModelArtifact
from churn_mlops.model.registry import CHAMPION, open_registry
from churn_mlops.observability.drift_html import render_report
from churn_mlops.observability.drift_report import (
    DriftReportError,
    Source,
    compare,
    parse_since,
    profile_of,
    read_sample,
    summary_lines,
)
from churn_mlops.settings import Settings

drift_app = typer.Typer(
    help="Feature and prediction drift of the served model against its training data.",
    no_args_is_help=True,
)
console = Console(stderr=True)


def serving_artifact(settings: Settings, model: str | None) -> ModelArtifact:
    """The artifact the report is about: `model` (a registered version or an artifact
    directory), else what `serve` would serve."""
    try:
        if model is not None:
            if Path(model).is_dir():
                return ModelArtifact.load(Path(model))
            return ModelArtifact.load(open_registry(settings).get(model).path)
        if "model_dir" in settings.model_fields_set:  # CHURN_MODEL_DIR
            return ModelArtifact.load(settings.model_dir)
        champion = open_registry(settings).resolve(CHAMPION)
    except ServiceError as error:
        raise DriftReportError(error.detail) from None
    except ArtifactError as error:
        raise DriftReportError(str(error)) from None
    if champion is None:
        raise DriftReportError(
            "no model is served yet (the registry has no champion): pass --model VERSION, "
            "or train one with `churn-mlops train --promote`"
        )
    return ModelArtifact.load(champion.path)


class _Stages:
    """A rich progress bar per stage of the work, on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        task = self.tasks.get(stage)
        if task is None:
            task = self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(task, completed=done, total=total)


@drift_app.command("report")
def report_command(
    since: Annotated[
        str, typer.Option(help="Window: 7d, 12h, 30m, 2w before now, or an ISO date.")
    ] = "7d",
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("drift-report.html"),
    model: Annotated[
        str | None,
        typer.Option(help="A registered version (or artifact directory); default: the served."),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            help="log: the prediction log's rows with features (CHURN_LOG_FEATURES); "
            "customers: the stored customers created or updated in the window; both."
        ),
    ] = "log",
) -> None:
    """Compare what the model scored since `--since` with its training data: PSI per feature
    and of the predictions, with plots, in one self-contained HTML file."""
    if source not in ("log", "customers", "both"):
        console.print(f"[red]--source {source!r}:[/] choose log, customers or both")
        raise typer.Exit(2)
    settings = Settings()
    if not settings.database_url:
        console.print("[red]no database:[/] CHURN_DATABASE_URL is empty")
        raise typer.Exit(2)
    chosen: Source = source  # type: ignore[assignment]
    try:
        start = parse_since(since)
        artifact = serving_artifact(settings, model)
        profile = profile_of(artifact)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bars:
            stages = _Stages(bars)
            sample = asyncio.run(
                read_sample(settings.database_url, artifact, start, chosen, stages)
            )
            report = compare(
                profile, sample, model_version=artifact.version, since=start, source=chosen
            )
            document = render_report(report, lambda done, total: stages("plotting", done, total))
    except DriftReportError as error:
        console.print(f"[red]no drift report:[/] {error}")
        raise typer.Exit(1) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    for line in summary_lines(report):
        typer.echo(line)
    typer.echo(f"Report written to {out} ({out.stat().st_size / 1024:,.0f} KiB)")
