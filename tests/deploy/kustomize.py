"""Renders the kustomizations under deploy/k8s offline, without kubectl.

Exactly the kustomize features those files use, applied in kustomize's order (patches, namespace,
labels, images):

- `resources`: manifest files and kustomization directories;
- `namespace`, set on every namespaced object;
- `labels` with `pairs` and `includeTemplates` (not `includeSelectors`);
- `images` with `name`, `newName`, `newTag`, `digest`;
- `patches` from a `path`: a strategic-merge patch found by its kind and name, or a JSON 6902
  patch (ops test, add, replace, remove) on a `target` given by kind and name.

Anything else is refused, so a manifest that starts using another feature fails here instead of
rendering differently from kustomize. `test_kustomize.py` compares the output with
`kubectl kustomize` where kubectl exists.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
)
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
    }
)
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
# The strategic-merge keys of the lists of objects a patch may merge into (Kubernetes' OpenAPI
# x-kubernetes-list-map-keys, which kustomize follows). Other lists of objects are refused: their
# merge rules differ per field and are not reproduced here.
LIST_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}


class KustomizeError(ValueError):
    """The kustomization uses a feature this renderer does not support, or is wrong."""


@dataclass(frozen=True)
class ObjectId:
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace or '-'}/{self.name}"


def object_id(manifest: Manifest) -> ObjectId:
    metadata = manifest.get("metadata", {})
    return ObjectId(manifest["kind"], metadata.get("namespace"), metadata["name"])


def render(directory: Path) -> list[Manifest]:
    """The objects `kubectl kustomize directory` prints, in the order they were accumulated."""
    kustomization = _load_kustomization(directory)
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects.extend(render(path) if path.is_dir() else _load_manifests(path))
    _check_unique(objects, directory)
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, patch, directory)
    if "namespace" in kustomization:
        for manifest in objects:
            if manifest["kind"] not in CLUSTER_SCOPED_KINDS:
                manifest.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for labels in kustomization.get("labels", []):
        _apply_labels(objects, labels)
    for image in kustomization.get("images", []):
        _apply_image(objects, image)
    return objects


def _load_kustomization(directory: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            kustomization: dict[str, Any] = yaml.safe_load((directory / name).read_text())
            break
    else:
        raise KustomizeError(f"no kustomization file in {directory}")
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unsupported)}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{directory}: not a Kustomization")
    return kustomization


def _load_manifests(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _check_unique(objects: list[Manifest], directory: Path) -> None:
    seen: set[ObjectId] = set()
    for manifest in objects:
        key = object_id(manifest)
        if key in seen:
            raise KustomizeError(f"{directory}: {key} is defined twice")
        seen.add(key)


# --------------------------------------------------------------------------- patches


def _apply_patch(objects: list[Manifest], entry: dict[str, Any], directory: Path) -> None:
    if set(entry) - {"path", "target"} or "path" not in entry:
        raise KustomizeError(f"{directory}: only `path` and `target` are supported in {entry}")
    patch = yaml.safe_load((directory / entry["path"]).read_text())
    if isinstance(patch, list):
        target = entry.get("target")
        if not target or set(target) - {"kind", "name"}:
            raise KustomizeError(f"{entry['path']}: a JSON patch needs a kind/name target")
        matches = [
            manifest
            for manifest in objects
            if manifest["kind"] == target.get("kind", manifest["kind"])
            and manifest["metadata"]["name"] == target.get("name", manifest["metadata"]["name"])
        ]
        if not matches:
            raise KustomizeError(f"{entry['path']}: no object matches the target {target}")
        for manifest in matches:
            apply_json_patch(manifest, patch)
        return
    if "target" in entry:
        raise KustomizeError(f"{entry['path']}: a strategic-merge patch with a target")
    wanted = ObjectId(patch["kind"], patch["metadata"].get("namespace"), patch["metadata"]["name"])
    matches = [
        manifest
        for manifest in objects
        if (found := object_id(manifest)).kind == wanted.kind
        and found.name == wanted.name
        and wanted.namespace in (None, found.namespace)
    ]
    if len(matches) != 1:
        raise KustomizeError(f"{entry['path']}: {len(matches)} objects match {wanted}")
    index = objects.index(matches[0])
    objects[index] = strategic_merge(matches[0], patch)


def strategic_merge(base: Manifest, patch: Manifest) -> Manifest:
    """`base` with `patch` merged in: maps recursively, null deletes, keyed lists by key."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"patch directive {key} is not supported")
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = strategic_merge(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = _merge_list(key, merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_list(field: str, base: list[Any], patch: list[Any]) -> list[Any]:
    if not any(isinstance(item, dict) for item in base + patch):
        return copy.deepcopy(patch)  # lists of scalars are replaced
    keys = LIST_MERGE_KEYS.get(field)
    if keys is None:
        raise KustomizeError(f"merging into the list {field!r} is not supported")
    merged = copy.deepcopy(base)
    for item in patch:
        identity = tuple(item.get(key) for key in keys)
        position = next(
            (i for i, old in enumerate(merged) if tuple(old.get(k) for k in keys) == identity),
            None,
        )
        if position is None:
            # kustomize inserts new items at positions of its own; the manifests never need it.
            raise KustomizeError(f"adding items to {field!r} by strategic merge: use a JSON patch")
        merged[position] = strategic_merge(merged[position], item)
    return merged


def apply_json_patch(manifest: Manifest, operations: list[dict[str, Any]]) -> None:
    """RFC 6902 in place, with the ops test, add, replace and remove."""
    for operation in operations:
        op, path = operation["op"], operation["path"]
        *parents, last = _pointer(path)
        container: Any = manifest
        for token in parents:
            container = container[int(token)] if isinstance(container, list) else container[token]
        if op == "test":
            current = container[int(last)] if isinstance(container, list) else container[last]
            if current != operation["value"]:
                raise KustomizeError(f"JSON patch test failed at {path}: {current!r}")
        elif op in ("add", "replace"):
            value = copy.deepcopy(operation["value"])
            if isinstance(container, list):
                index = len(container) if last == "-" else int(last)
                if op == "add":
                    container.insert(index, value)
                else:
                    container[index] = value
            else:
                if op == "replace" and last not in container:
                    raise KustomizeError(f"JSON patch replace of a missing {path}")
                container[last] = value
        elif op == "remove":
            del container[int(last) if isinstance(container, list) else last]
        else:
            raise KustomizeError(f"JSON patch op {op!r} is not supported")


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"not a JSON pointer: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


# --------------------------------------------------------------------------- labels, images


def _apply_labels(objects: list[Manifest], entry: dict[str, Any]) -> None:
    if set(entry) - {"pairs", "includeTemplates", "includeSelectors"} or entry.get(
        "includeSelectors"
    ):
        raise KustomizeError(f"labels: only pairs and includeTemplates are supported: {entry}")
    for manifest in objects:
        manifest.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
        if entry.get("includeTemplates") and manifest["kind"] in POD_TEMPLATE_KINDS:
            template = manifest["spec"]["template"]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])


def _apply_image(objects: list[Manifest], entry: dict[str, Any]) -> None:
    if set(entry) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"images: unsupported fields in {entry}")
    for container in _containers(objects):
        name, tag, digest = split_image(container["image"])
        if name != entry["name"]:
            continue
        name = entry.get("newName", name)
        if "digest" in entry:
            container["image"] = f"{name}@{entry['digest']}"
        elif "newTag" in entry:
            container["image"] = f"{name}:{entry['newTag']}"
        else:
            container["image"] = (
                name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`registry:5000/name:tag@sha256:...` as its name, tag and digest."""
    name, _, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def _containers(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("containers", "initContainers") and isinstance(item, list):
                yield from item
            else:
                yield from _containers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _containers(item)
