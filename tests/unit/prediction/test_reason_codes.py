"""ReasonCodes: one row's reasons are exactly a batch's, and zero contributions are no reasons."""

from __future__ import annotations

from churn_mlops.data.telco_example import FEATURE_NAMES
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.prediction.reasons import ReasonCodes


def test_one_row_gets_exactly_the_reasons_a_batch_gives_it(artifact: ModelArtifact) -> None:
    rows = artifact.parity_rows[::11]  # with nulls and unseen codes among them
    values = [tuple(f"value-{i}-{j}" for j in range(len(FEATURE_NAMES))) for i in range(len(rows))]
    for top_k in (1, 5, len(FEATURE_NAMES)):
        reasons = ReasonCodes(artifact.explainer, top_k, artifact.version)
        batch = reasons.of_rows(rows, values)
        for index in range(len(rows)):
            assert reasons.of_row(rows[index : index + 1], values[index]) == batch[index]


def test_every_feature_with_a_contribution_is_listed_and_no_other(
    artifact: ModelArtifact,
) -> None:
    assert artifact.explainer is not None
    rows = artifact.parity_rows[:200]
    contributions = artifact.explainer.explain(rows)
    reasons = ReasonCodes(artifact.explainer, len(FEATURE_NAMES), artifact.version)
    values = [tuple(range(len(FEATURE_NAMES)))] * len(rows)

    for document, row in zip(reasons.of_rows(rows, values), contributions, strict=True):
        listed = [FEATURE_NAMES.index(r["feature"]) for r in document["features"]]
        assert sorted(listed) == [i for i in range(len(row)) if row[i] != 0.0]
        magnitudes = [abs(r["contribution"]) for r in document["features"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
