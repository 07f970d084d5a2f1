"""The schema inferred from a dataset that is not Telco, with its schema file applied, and the
model trained on it."""

from __future__ import annotations

import numpy as np

from churn_mlops.data import Dataset
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.own_data import OWN_FEATURES, OWN_ROWS, REGIONS


def test_every_kind_is_inferred_from_the_data(own_dataset: Dataset) -> None:
    schema = own_dataset.schema
    assert schema.names == OWN_FEATURES
    kinds = {spec.name: spec.kind for spec in schema.features}
    assert kinds == {
        "region": "categorical",
        "plan": "categorical",
        "seats": "integer",
        "monthly_spend": "number",
        "logins_last30d": "integer",
        "has_support_contract": "boolean",
    }
    assert schema.spec("region").values == tuple(REGIONS)
    assert schema.spec("plan").nullable
    assert schema.spec("logins_last30d").nullable
    assert not schema.spec("seats").nullable
    assert schema.id_column == "Account ID"
    assert (schema.target.column, schema.target.positive) == ("Churned", "1")


def test_the_schema_file_overrides_what_it_names(own_dataset: Dataset) -> None:
    seats = own_dataset.schema.spec("seats")
    assert (seats.minimum, seats.maximum) == (1, 100000)
    assert seats.description == "Paid seats on the account."
    assert own_dataset.schema.spec("plan").unknown == "missing"
    # Inferred: never below 0 for a column without negatives, widened by the seen range.
    spend = own_dataset.schema.spec("monthly_spend")
    seen = [v for v in own_dataset.columns["monthly_spend"]]
    assert spend.minimum == 0
    assert spend.maximum == max(seen) + (max(seen) - min(seen))


def test_cells_are_read_by_their_kind(own_dataset: Dataset) -> None:
    assert len(own_dataset) == OWN_ROWS
    assert own_dataset.customer_ids[0] == "ACC-00000"
    columns = own_dataset.columns
    assert {type(v) for v in columns["has_support_contract"]} == {bool}
    assert {type(v) for v in columns["seats"]} == {int}
    assert None in columns["plan"]
    assert None in columns["logins_last30d"]
    assert own_dataset.schema.example == {n: columns[n][0] for n in OWN_FEATURES}


def test_a_model_trains_and_loads_on_the_other_columns(own_artifact: ModelArtifact) -> None:
    assert own_artifact.schema.names == OWN_FEATURES
    assert list(own_artifact.info.features) == list(OWN_FEATURES)
    assert own_artifact.encoder.vocabularies["region"] == tuple(REGIONS)
    rows = own_artifact.parity_rows
    probabilities = own_artifact.forest.predict(rows)
    assert rows.shape[1] == len(OWN_FEATURES)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert own_artifact.info.holdout_metrics.roc_auc > 0.6
