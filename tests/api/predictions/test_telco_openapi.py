"""Served with a Telco model, the OpenAPI document built from the model's feature schema is the
one the hand-written Telco models gave (issue 17: "byte for byte the same API").

telco_openapi.json is /openapi.json of commit edc7835 (the last before the schema came from the
model), captured through the lifespan with this folder's settings. The document served now must
be that one, in the same key order, apart from the changes listed in INTENDED, each made on
purpose. A new route or field changes this document: add it to INTENDED with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

SNAPSHOT = Path(__file__).with_name("telco_openapi.json")

INTENDED: dict[tuple[str, ...], str] = {
    ("components", "schemas", "ModelStatus", "properties", "schema_sha256"): (
        "the model metadata names its feature schema's sha256 (a44fcb9)"
    ),
    ("components", "schemas", "ModelStatus", "properties", "parity_sha256", "description"): (
        "parity.npz replaced parity.npy (a44fcb9)"
    ),
    **{
        ("paths", path, method, "responses", "409", "description"): (
            "a promotion is refused when stored customers lack the version's features (b9e6ef9)"
        )
        for path, method in (("/model/champion", "put"), ("/model/challenger", "put"))
    },
    ("paths", "/customers", "post"): "POST /customers stores a customer (544b7c6)",
    ("components", "schemas", "CustomerWritten"): "its response (544b7c6)",
    ("components", "schemas", "RefusedStatus", "properties", "reason", "enum"): (
        "a challenger reading other rows than the champion is refused as 'features'"
    ),
    ("paths", "/model/schema"): "GET /model/schema: the served model's feature schema",
    ("components", "schemas", "FeatureSchemaDocument"): "its response",
    ("components", "schemas", "FeatureDocument"): "its response's features",
    ("components", "schemas", "TargetDocument"): "its response's target",
}


def _without_intended(document: dict[str, Any]) -> dict[str, Any]:
    for path in INTENDED:
        parent: Any = document
        for key in path[:-1]:
            parent = parent.get(key, {})
        parent.pop(path[-1], None)
    return document


def _text(document: dict[str, Any]) -> str:
    # Not sorted: the key order is part of the document a client reads.
    return json.dumps(document, indent=2, ensure_ascii=False)


def test_the_telco_openapi_document_is_the_one_of_the_hand_written_models(
    client: TestClient,
) -> None:
    served = _without_intended(client.get("/openapi.json").json())
    before = _without_intended(json.loads(SNAPSHOT.read_text()))
    assert _text(served) == _text(before)


def test_every_intended_change_is_in_the_served_document(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    for path in INTENDED:
        node: Any = served
        for key in path:
            assert key in node, f"{'/'.join(path)} is listed as changed but is not served"
            node = node[key]


def test_the_prediction_parts_are_unchanged_whole(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    before = json.loads(SNAPSHOT.read_text())
    for path in ("/predict", "/predict/batch"):
        assert _text(served["paths"][path]) == _text(before["paths"][path])
    for name in ("PredictRequest", "CustomerFeatures"):
        assert _text(served["components"]["schemas"][name]) == _text(
            before["components"]["schemas"][name]
        )
