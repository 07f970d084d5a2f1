"""Every rendered object matches its API schema: core objects through `kubernetes-validate
--strict`, the VerticalPodAutoscaler (a custom resource it has no schema for) through ours."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # kubernetes-validate's own validator
import pytest
import yaml

from tests.deploy.kustomize import Manifest
from tests.deploy.manifests import CUSTOM_RESOURCE_KINDS, of_kind

KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
# The oldest Kubernetes the manifests support (matchLabelKeys, unhealthyPodEvictionPolicy) and
# the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

_QUANTITY_MAP = {
    "type": "object",
    "propertyNames": {"enum": ["cpu", "memory"]},
    "additionalProperties": {
        "type": ["string", "integer"],
        "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$",
    },
}
# The fields of autoscaling.k8s.io/v1 VerticalPodAutoscaler that a manifest may set (the VPA
# project's CRD, vertical-pod-autoscaler/deploy/vpa-v1-crd-gen.yaml); anything else is refused.
VPA_V1_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "autoscaling.k8s.io/v1"},
        "kind": {"const": "VerticalPodAutoscaler"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["targetRef"],
            "properties": {
                "targetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["kind", "name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "updatePolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        # A string: unquoted, YAML reads Off as the boolean false.
                        "updateMode": {
                            "enum": ["Off", "Initial", "Recreate", "Auto", "InPlaceOrRecreate"]
                        },
                        "minReplicas": {"type": "integer", "minimum": 1},
                    },
                },
                "resourcePolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "containerPolicies": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["containerName"],
                                "properties": {
                                    "containerName": {"type": "string"},
                                    "mode": {"enum": ["Auto", "Off"]},
                                    "minAllowed": _QUANTITY_MAP,
                                    "maxAllowed": _QUANTITY_MAP,
                                    "controlledResources": {
                                        "type": "array",
                                        "items": {"enum": ["cpu", "memory"]},
                                        "uniqueItems": True,
                                    },
                                    "controlledValues": {
                                        "enum": ["RequestsAndLimits", "RequestsOnly"]
                                    },
                                },
                            },
                        }
                    },
                },
                "recommenders": {
                    "type": "array",
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
            },
        },
    },
}


def kubernetes_validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", version, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def vpa_schema_errors(manifest: Manifest) -> list[str]:
    validator = jsonschema.Draft202012Validator(VPA_V1_SCHEMA)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_pass_kubernetes_validate_strict(
    rendered: list[Manifest], version: str, tmp_path: Path
) -> None:
    core = [m for m in rendered if m["kind"] not in CUSTOM_RESOURCE_KINDS]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(core, sort_keys=False))
    result = kubernetes_validate(path, version)
    assert result.returncode == 0, result.stdout + result.stderr
    # --quiet prints only warnings and failures: a kind it has no schema for is a warning.
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.timeout(60)
def test_kubernetes_validate_strict_refuses_an_unknown_field(
    renders: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    """The check above would catch a misspelt field."""
    deployment = copy.deepcopy(of_kind(renders["base"], "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = kubernetes_validate(path, KUBERNETES_VERSIONS[-1])
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


def test_only_known_custom_resources_skip_kubernetes_validate(
    renders: dict[str, list[Manifest]],
) -> None:
    for objects in renders.values():
        for manifest in objects:
            if manifest["kind"] in CUSTOM_RESOURCE_KINDS:
                assert manifest["apiVersion"] == "autoscaling.k8s.io/v1"


def test_vpa_matches_the_v1_schema(renders: dict[str, list[Manifest]]) -> None:
    vpas = [m for objects in renders.values() for m in of_kind(objects, "VerticalPodAutoscaler")]
    assert vpas
    for vpa in vpas:
        assert vpa_schema_errors(vpa) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("spec/updatePolicy/updateMode", False, "is not one of"),
        ("spec/resourcePolicy/containerPolicies/0/controlledResource", ["cpu"], "controlled"),
        ("spec/resourcePolicy/containerPolicies/0/maxAllowed/gpu", "1", "gpu"),
        ("spec/resourcePolicy/containerPolicies/0/minAllowed/cpu", "lots", "does not match"),
    ],
)
def test_vpa_schema_refuses_a_wrong_manifest(
    renders: dict[str, list[Manifest]], field: str, value: Any, message: str
) -> None:
    vpa = copy.deepcopy(of_kind(renders["overlays/production"], "VerticalPodAutoscaler")[0])
    *parents, last = field.split("/")
    node: Any = vpa
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    errors = vpa_schema_errors(vpa)
    assert any(message in error for error in errors), errors
