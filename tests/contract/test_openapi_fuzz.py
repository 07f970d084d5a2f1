"""schemathesis over the whole OpenAPI document of the real app, with every check, with
credentials and without: no 5xx, no response outside the schema, no undeclared status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.case import Case
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from churn_mlops.api.app import ChurnAPI, create_app
from tests.contract.conftest import contract_settings

pytestmark = pytest.mark.timeout(300)

# Bounded so that both runs fit in about a minute inside `make test`.
EXAMPLES = 12
# The document is read at collection, from an app built with the same settings (it needs no
# model); the requests go to the real app of the fixtures, in process.
schema = schemathesis.openapi.from_dict(
    create_app(contract_settings(model_dir=Path("unused"), database_url="")).openapi()
)
schema.config.update(base_url="http://testserver")
# Too many batch rows is a 413 (Content Too Large), as the route documents.
negative = schema.config.checks.negative_data_rejection
negative.expected_statuses = [*negative.expected_statuses, "413"]
_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", autouse=True)
def _stop_lifespans() -> Iterator[None]:
    yield
    # schemathesis started the app's lifespan on its first call: stop it with the module.
    shutdown_lifespans()


# An outcome observed later than tomorrow is refused (422 naming `observed_at`): a JSON schema
# cannot say "not after tomorrow", so a far-future date is schema-valid yet rightly refused.
# The route's own tests cover its acceptance of valid outcomes.
DATE_BOUNDED = {("POST", "/customers/{customer_id}/outcome")}
# A V2 inference request is schema-valid with any tensors; only one tensor per model feature,
# all with the same rows, is accepted (400 naming the tensor otherwise, as the route documents).
# tests/api/v2 covers the accepted requests.
POSITIVE_DATA_UNCHECKED = DATE_BOUNDED | {
    ("POST", "/v2/models/{model_name}/infer"),
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer"),
}


def _call(case: Case, app: ChurnAPI, headers: dict[str, str]) -> None:
    # Checks that replay the request (without credentials, say) go through the operation's
    # schema: point it at the app too.
    case.operation.schema.app = app
    bounded = (case.method.upper(), case.operation.path) in POSITIVE_DATA_UNCHECKED
    excluded = [positive_data_acceptance] if bounded else None
    case.call_and_validate(headers=headers, app=app, excluded_checks=excluded)


@schema.parametrize()
@_settings
def test_api_conforms_to_its_schema_with_credentials(
    case: Case, real_app: ChurnAPI, api_key: str
) -> None:
    _call(case, real_app, {"X-API-Key": api_key})


@schema.parametrize()
@_settings
def test_api_conforms_to_its_schema_without_credentials(case: Case, real_app: ChurnAPI) -> None:
    _call(case, real_app, {})
