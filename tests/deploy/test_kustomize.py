"""The offline renderer agrees with kustomize, and refuses what it does not implement."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import K8S
from tests.deploy.kustomize import (
    KustomizeError,
    Manifest,
    apply_json_patch,
    object_id,
    render,
    split_image,
    strategic_merge,
)

DEPLOYMENT: Manifest = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "args": ["a", "b"]},
                    {"name": "side", "image": "side:1"},
                ]
            }
        }
    },
}


@pytest.mark.timeout(60)
def test_render_matches_kubectl_kustomize(
    kubectl: str, kustomization: str, rendered: list[Manifest]
) -> None:
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    theirs = {object_id(m): m for m in yaml.safe_load_all(result.stdout) if m}
    ours = {object_id(m): m for m in rendered}
    assert sorted(map(str, ours)) == sorted(map(str, theirs))
    for key, manifest in ours.items():
        assert manifest == theirs[key], f"{key} differs from kubectl kustomize"


def test_strategic_merge_merges_containers_by_name_and_replaces_scalar_lists() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "side", "args": ["x"]}]}}}}
    merged = strategic_merge(DEPLOYMENT, patch)
    app, side = merged["spec"]["template"]["spec"]["containers"]
    assert app == DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]
    assert side == {"name": "side", "image": "side:1", "args": ["x"]}


def test_strategic_merge_deletes_a_field_set_to_null() -> None:
    patch = {"metadata": {"name": "web"}, "spec": {"template": None}}
    assert strategic_merge(DEPLOYMENT, patch)["spec"] == {}


def test_strategic_merge_refuses_to_add_list_items() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "n:1"}]}}}}
    with pytest.raises(KustomizeError, match="use a JSON patch"):
        strategic_merge(DEPLOYMENT, patch)


def test_json_patch_replaces_after_a_passing_test() -> None:
    manifest = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    apply_json_patch(
        manifest,
        [
            {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "side"},
            {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "s:2"},
        ],
    )
    assert manifest["spec"]["template"]["spec"]["containers"][1]["image"] == "s:2"


def test_json_patch_fails_when_its_test_fails() -> None:
    manifest = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    with pytest.raises(KustomizeError, match="test failed"):
        apply_json_patch(
            manifest,
            [{"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "side"}],
        )


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("churn-mlops", ("churn-mlops", None, None)),
        ("redis:7.4-alpine", ("redis", "7.4-alpine", None)),
        ("registry:5000/team/app:1.2@sha256:ab", ("registry:5000/team/app", "1.2", "sha256:ab")),
        ("registry:5000/team/app", ("registry:5000/team/app", None, None)),
    ],
)
def test_split_image(image: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == parts


def test_render_applies_namespace_labels_and_images(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(yaml.safe_dump(DEPLOYMENT))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": "shop",
                "resources": ["web.yaml"],
                "labels": [{"pairs": {"team": "a"}, "includeTemplates": True}],
                "images": [{"name": "app", "newName": "reg/app", "newTag": "2"}],
            }
        )
    )
    [manifest] = render(tmp_path)
    assert manifest["metadata"] == {"name": "web", "namespace": "shop", "labels": {"team": "a"}}
    template = manifest["spec"]["template"]
    assert template["metadata"]["labels"] == {"team": "a"}
    assert [c["image"] for c in template["spec"]["containers"]] == ["reg/app:2", "side:1"]


def test_render_refuses_an_unsupported_field(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [], "replicas": [{"name": "web", "count": 3}]})
    )
    with pytest.raises(KustomizeError, match="replicas"):
        render(tmp_path)
