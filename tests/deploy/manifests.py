"""Looking things up in rendered Kubernetes objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tests.deploy.kustomize import POD_TEMPLATE_KINDS, Manifest

# Kinds that kubernetes-validate has no schema for; each is checked by a test of its own.
CUSTOM_RESOURCE_KINDS = frozenset({"VerticalPodAutoscaler"})

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_SUFFIX = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [manifest for manifest in objects if manifest["kind"] == kind]


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in of_kind(objects, kind) if m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [manifest for manifest in objects if manifest["kind"] in POD_TEMPLATE_KINDS]


def containers(workload: Manifest) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_value(container: dict[str, Any], name: str) -> str | None:
    for variable in container.get("env", []):
        if variable["name"] == name:
            value: str | None = variable.get("value")
            return value
    return None


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("500m", "2", "512Mi") as a number of base units."""
    match = _QUANTITY.match(str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match["number"]) * _SUFFIX[match["suffix"]]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a `matchLabels` selector (the only form the manifests use) matches `labels`."""
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(key) == value for key, value in wanted.items())
