from __future__ import annotations

import pytest

from churn_mlops.data import TelcoDataset
from churn_mlops.model.training import TrainingConfig, train_model


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_default_training_beats_the_quality_bar_on_unseen_customers(dataset: TelcoDataset) -> None:
    result = train_model(dataset, TrainingConfig())
    metrics = result.artifact.info.holdout_metrics
    assert metrics.roc_auc >= 0.845
    # The search must earn its keep against sklearn's defaults on the same hold-out.
    assert metrics.roc_auc > result.default_holdout_roc_auc
    assert metrics.brier < 0.15
    assert result.artifact.info.holdout_rows == round(len(dataset) * 0.2)


def test_progress_reports_every_stage_to_completion(dataset: TelcoDataset) -> None:
    seen: dict[str, tuple[int, int]] = {}
    train_model(
        dataset,
        TrainingConfig(search_iterations=2, cv_folds=2),
        progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)),
    )
    assert seen == {"search": (2, 2), "fit": (2, 2)}
