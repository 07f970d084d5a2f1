"""deploy/k8s/kserve: the InferenceService example, checked offline.

An InferenceService is a custom resource kubernetes-validate has no schema for, so it is checked
against the part of KServe's own CRD schema that it uses (kserve_inferenceservice_v1beta1_schema
.yaml, data extracted from kserve/kserve: see its header), made strict as `kubectl apply
--validate=strict` is (an unknown field is an error), then against the base Deployment: the
predictor must run the same image with the same settings, secrets, probes and resources.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.conftest import K8S
from tests.deploy.kustomize import Manifest, split_image
from tests.deploy.manifests import env_value, find

INFERENCE_SERVICE = K8S / "kserve" / "inferenceservice.yaml"
CRD_SCHEMA = Path(__file__).with_name("kserve_inferenceservice_v1beta1_schema.yaml")


def strict_json_schema(node: Any) -> Any:
    """A Kubernetes structural (OpenAPI v3) schema as JSON Schema, refusing unknown fields as
    the API server's strict field validation does, except where the CRD preserves them."""
    if isinstance(node, list):
        return [strict_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: strict_json_schema(value) for key, value in node.items() if not key.startswith("x-")
    }
    if "properties" in node:
        converted["properties"] = {
            name: strict_json_schema(value) for name, value in node["properties"].items()
        }
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            converted.setdefault("additionalProperties", False)
    if node.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return converted


@pytest.fixture(scope="module")
def inference_service() -> Manifest:
    document: Manifest = yaml.safe_load(INFERENCE_SERVICE.read_text())
    return document


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = strict_json_schema(yaml.safe_load(CRD_SCHEMA.read_text()))
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def base_container(renders: dict[str, list[Manifest]]) -> dict[str, Any]:
    deployment = find(renders["base"], "Deployment", "churn-api")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def schema_errors(validator: Any, manifest: Manifest) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


def predictor_container(manifest: Manifest) -> dict[str, Any]:
    containers = manifest["spec"]["predictor"]["containers"]
    assert len(containers) == 1, "one container: KServe's predictor is the first one"
    container: dict[str, Any] = containers[0]
    return container


def test_matches_the_inference_service_crd_schema(
    inference_service: Manifest, validator: Any
) -> None:
    assert inference_service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert inference_service["kind"] == "InferenceService"
    assert schema_errors(validator, inference_service) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec/predictor/containers/0/readinesProbe", {}, "readinesProbe"),
        ("spec/predictor/containers/0/ports/0/containerPort", "8080", "is not of type"),
        ("spec/predictor/minReplica", 2, "minReplica"),
        ("spec/predictor/containers/0/resources/limits/cpu", "two", "does not match"),
        ("spec/predictor/containers/0/env/5/valueFrom/secretKeyRef/key", None, "is not of type"),
    ],
)
def test_schema_refuses_a_wrong_manifest(
    inference_service: Manifest, validator: Any, path: str, value: Any, message: str
) -> None:
    wrong = copy.deepcopy(inference_service)
    *parents, last = path.split("/")
    node: Any = wrong
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    errors = schema_errors(validator, wrong)
    assert any(message in error for error in errors), errors


def test_runs_the_project_image_at_the_base_tag(
    inference_service: Manifest, base_container: dict[str, Any]
) -> None:
    assert split_image(predictor_container(inference_service)["image"]) == split_image(
        base_container["image"]
    )


def test_serves_rest_on_the_first_port_and_grpc_on_an_h2c_port(
    inference_service: Manifest,
) -> None:
    container = predictor_container(inference_service)
    rest, grpc = container["ports"]
    # KServe exposes the first port as the predictor Service's port 80 and routes gRPC to a port
    # whose name holds "h2c" (appProtocol kubernetes.io/h2c).
    assert rest["containerPort"] == int(env_value(container, "CHURN_PORT") or 0) == 8080
    assert "h2c" not in rest["name"]
    assert "grpc" not in rest["name"]
    assert grpc["name"] == "h2c"
    command = container["command"]
    assert command[:2] == ["churn-mlops", "serve"], shlex.join(command)
    assert command[command.index("--grpc-port") + 1] == str(grpc["containerPort"])
    # One pod serves both ports: Knative (serverless) mode exposes one container port only.
    annotations = inference_service["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] in {"RawDeployment", "Standard"}


def test_takes_the_base_deployments_settings_and_secrets(
    inference_service: Manifest, base_container: dict[str, Any]
) -> None:
    container = predictor_container(inference_service)
    assert container["envFrom"] == base_container["envFrom"]
    # The settings that differ: KServe's REST port, and gRPC's (given as --grpc-port there).
    ports = {"CHURN_PORT", "CHURN_GRPC_PORT"}
    mine = {item["name"]: item for item in container["env"] if item["name"] not in ports}
    base = {item["name"]: item for item in base_container["env"] if item["name"] not in ports}
    assert mine == base
    assert any("secretKeyRef" in item.get("valueFrom", {}) for item in mine.values())


def test_probes_resources_and_hardening_match_the_base(
    inference_service: Manifest,
    base_container: dict[str, Any],
    renders: dict[str, list[Manifest]],
) -> None:
    container = predictor_container(inference_service)
    rest_port = container["ports"][0]["containerPort"]
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "h2c")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        expected = copy.deepcopy(base_container[probe])
        if "grpc" in expected:
            expected["grpc"]["port"] = grpc_port
        else:
            expected["httpGet"]["port"] = rest_port
        assert container[probe] == expected, probe
    for field in ("resources", "securityContext", "lifecycle", "volumeMounts"):
        assert container[field] == base_container[field], field
    predictor = inference_service["spec"]["predictor"]
    pod = find(renders["base"], "Deployment", "churn-api")["spec"]["template"]["spec"]
    for field in (
        "securityContext",
        "volumes",
        "terminationGracePeriodSeconds",
        "enableServiceLinks",
        "automountServiceAccountToken",
    ):
        assert predictor[field] == pod[field], field
    hpa = find(renders["base"], "HorizontalPodAutoscaler", "churn-api")["spec"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )
    cpu_target = next(m for m in hpa["metrics"] if m["resource"]["name"] == "cpu")
    assert predictor["scaleMetric"] == "cpu"
    assert predictor["scaleTarget"] == cpu_target["resource"]["target"]["averageUtilization"]
    assert inference_service["metadata"]["namespace"] == pod_namespace(renders)


def pod_namespace(renders: dict[str, list[Manifest]]) -> str:
    namespace: str = find(renders["base"], "Deployment", "churn-api")["metadata"]["namespace"]
    return namespace
