"""What registering an artifact writes to MLflow: one run that records how the model was made,
and one model version made from that run's artifacts.

    run         in the experiment named like the registered model, named by the version;
                params: the hyperparameters; metrics: `holdout_roc_auc`, `holdout_pr_auc`,
                `holdout_log_loss`, `holdout_brier`, `decision_threshold` and what the caller
                adds (`train`: `cv_roc_auc`); tags: `content_version`, `training_data_sha256`,
                `source_artifact_dir`; artifacts: the artifact's four files under `model/`
    version     of the registered model, from the run's `model/`; tags `churn_content_version`
                (what the registry searches by) and `churn_metadata` (metadata.json, so a
                listing needs no download)

Only `mlflow_registry` calls this, with a client it made: MLflow is imported by neither unless
the MLflow backend is configured.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from churn_mlops.core.model_info import ModelInfo

if TYPE_CHECKING:
    from mlflow import MlflowClient

VERSION_TAG = "churn_content_version"
METADATA_TAG = "churn_metadata"
ARTIFACT_PATH = "model"


def run_metrics_of(info: ModelInfo, extra: Mapping[str, float]) -> dict[str, float]:
    """The metrics a registration run logs."""
    return {
        **{f"holdout_{name}": float(value) for name, value in info.holdout_metrics},
        "decision_threshold": info.threshold,
        **extra,
    }


def log_and_register(
    client: MlflowClient,
    model_name: str,
    experiment_name: str,
    *,
    copy: Path,
    info: ModelInfo,
    source: Path,
    extra_metrics: Mapping[str, float],
) -> str:
    """Log a run for `copy`, a verified copy of the artifact in `source` whose metadata is
    `info`, and register a version of `model_name` from it; the MLflow version number."""
    from mlflow.entities import Metric, Param, RunStatus

    run = client.create_run(
        _experiment_id(client, experiment_name),
        run_name=info.version,
        tags={
            "content_version": info.version,
            "training_data_sha256": info.training_data_sha256,
            "source_artifact_dir": str(source.resolve()),
        },
    )
    run_id = run.info.run_id
    now_ms = int(time.time() * 1000)
    try:
        client.log_batch(
            run_id,
            metrics=[
                Metric(key, value, now_ms, 0)
                for key, value in run_metrics_of(info, extra_metrics).items()
            ],
            params=[Param(key, str(value)) for key, value in info.hyperparameters.items()],
        )
        client.log_artifacts(run_id, str(copy), ARTIFACT_PATH)
    except BaseException:
        # A run left RUNNING would look like a training still going on.
        with suppress(Exception):
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id)
    _ensure_registered_model(client, model_name)
    created = client.create_model_version(
        model_name,
        f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
        run_id=run_id,
        tags={VERSION_TAG: info.version, METADATA_TAG: info.model_dump_json()},
        # SQL and file registries create a version READY at once; waiting would only log.
        await_creation_for=0,
    )
    return str(created.version)


def _experiment_id(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # Another process created it between our look-up and our create.
    created = client.get_experiment_by_name(name)
    if created is None:
        raise MlflowException(f"experiment {name!r} was created and is gone")
    return str(created.experiment_id)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
