"""Policies every rendered kustomization under deploy/k8s must keep."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.conftest import K8S
from tests.deploy.kustomize import Manifest, split_image
from tests.deploy.manifests import (
    containers,
    env_value,
    find,
    of_kind,
    quantity,
    selects,
    workloads,
)
from tests.deploy.service_facts import (
    EXPORTED_METRICS,
    graceful_shutdown_seconds,
    setting_number,
    unknown_env_names,
)

API = "churn-api"
API_CONTAINER = "api"
# Created outside the repository in every cluster but a development one (deploy/README.md).
EXTERNAL_SECRETS = frozenset({"churn-api-secrets"})
HEALTH_LIVE, HEALTH_READY = "/health/live", "/health/ready"


def api_container(objects: list[Manifest]) -> dict[str, Any]:
    deployment = find(objects, "Deployment", API)
    return next(c for c in containers(deployment) if c["name"] == API_CONTAINER)


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def qos_class(workload: Manifest) -> str:
    """The pod's QoS class as the kubelet computes it from its containers' resources."""
    resources = [c.get("resources", {}) for c in containers(workload)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits", {}), r.get("requests", {})
        for name in ("cpu", "memory"):
            if name not in limits:
                return "Burstable"
            if quantity(requests.get(name, limits[name])) != quantity(limits[name]):
                return "Burstable"
    return "Guaranteed"


# --------------------------------------------------------------------------- every container


def test_every_container_sets_requests_and_limits(rendered: list[Manifest]) -> None:
    for workload in workloads(rendered):
        for container in containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert set(resources.get(kind, {})) >= {"cpu", "memory"}, (
                    f"{workload['metadata']['name']}/{container['name']} lacks {kind}"
                )
            for name in ("cpu", "memory"):
                assert quantity(resources["requests"][name]) <= quantity(
                    resources["limits"][name]
                ), f"{container['name']}: {name} request above its limit"


def test_every_container_has_liveness_and_readiness_probes(rendered: list[Manifest]) -> None:
    for workload in workloads(rendered):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container, f"{container['name']} has no liveness probe"
            assert "readinessProbe" in container, f"{container['name']} has no readiness probe"


def test_every_pod_runs_non_root_and_restricted(rendered: list[Manifest]) -> None:
    """The "restricted" Pod Security Standard that the namespace enforces."""
    for workload in workloads(rendered):
        pod = workload["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for container in containers(workload):
            context = {**pod_context, **container.get("securityContext", {})}
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert context.get("runAsNonRoot") is True, f"{where} may run as root"
            assert context.get("runAsUser", 1) != 0, f"{where} runs as uid 0"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("readOnlyRootFilesystem") is True, where


def test_every_image_has_a_fixed_tag(rendered: list[Manifest]) -> None:
    for workload in workloads(rendered):
        for container in containers(workload):
            _, tag, digest = split_image(container["image"])
            assert digest or (tag and tag != "latest"), f"{container['image']} is not pinned"


def test_service_links_are_off_because_they_share_the_settings_prefix(
    rendered: list[Manifest],
) -> None:
    # A Service named churn-redis injects CHURN_REDIS_PORT=tcp://...; one named churn would set
    # CHURN_PORT, which Settings would read as the port.
    for workload in workloads(rendered):
        assert workload["spec"]["template"]["spec"].get("enableServiceLinks") is False


def test_selectors_match_the_pods_they_are_meant_for(rendered: list[Manifest]) -> None:
    for workload in workloads(rendered):
        labels = pod_labels(workload)
        assert selects(workload["spec"]["selector"], labels)
        for constraint in workload["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            assert selects(constraint["labelSelector"], labels)
    for service in of_kind(rendered, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        chosen = [w for w in workloads(rendered) if selects(selector, pod_labels(w))]
        assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {len(chosen)}"
        ports = {p["name"] for c in containers(chosen[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    for budget in of_kind(rendered, "PodDisruptionBudget"):
        assert any(selects(budget["spec"]["selector"], pod_labels(w)) for w in workloads(rendered))


def test_references_to_config_maps_and_secrets_resolve(
    rendered: list[Manifest], kustomization: str
) -> None:
    present = {
        (m["kind"], m["metadata"]["name"]): m
        for m in rendered
        if m["kind"] in ("ConfigMap", "Secret")
    }
    missing: set[tuple[str, str]] = set()
    for workload in workloads(rendered):
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    name = source["configMapRef"]["name"]
                    if ("ConfigMap", name) not in present:
                        missing.add(("ConfigMap", name))
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                secret = present.get(("Secret", ref["name"]))
                if secret is None:
                    missing.add(("Secret", ref["name"]))
                else:
                    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                    assert ref["key"] in keys, f"Secret {ref['name']} has no key {ref['key']}"
    assert {name for kind, name in missing if kind == "ConfigMap"} == set()
    missing_secrets = {name for kind, name in missing if kind == "Secret"}
    if kustomization == "overlays/dev":
        assert missing_secrets == set()
    else:
        assert missing_secrets <= EXTERNAL_SECRETS


def test_only_the_dev_overlay_renders_a_secret(
    rendered: list[Manifest], kustomization: str
) -> None:
    # Applying the production overlay must never overwrite the real, externally made Secret.
    secrets = of_kind(rendered, "Secret")
    assert bool(secrets) == (kustomization == "overlays/dev")


# --------------------------------------------------------------------------- the API pods


def test_api_settings_are_real_settings(rendered: list[Manifest]) -> None:
    container = api_container(rendered)
    names = {variable["name"] for variable in container.get("env", [])}
    for source in container.get("envFrom", []):
        config_map = find(rendered, "ConfigMap", source["configMapRef"]["name"])
        names |= set(config_map["data"])
    unknown = unknown_env_names(names)
    assert unknown == [], f"{unknown} are set but are not fields of churn_mlops Settings"


def test_api_runs_one_server_process_on_its_declared_port(rendered: list[Manifest]) -> None:
    container = api_container(rendered)
    assert env_value(container, "CHURN_WORKERS") == "1"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env_value(container, "CHURN_PORT") == str(ports["http"])


def test_api_is_burstable_with_the_planned_resources(rendered: list[Manifest]) -> None:
    deployment = find(rendered, "Deployment", API)
    resources = api_container(rendered)["resources"]
    assert qos_class(deployment) == "Burstable"
    assert quantity(resources["requests"]["cpu"]) == quantity("500m")
    assert quantity(resources["requests"]["memory"]) == quantity("320Mi")
    assert quantity(resources["limits"]["cpu"]) == quantity("2")
    assert quantity(resources["limits"]["memory"]) == quantity("2Gi")


def test_api_probes_use_the_health_endpoints(rendered: list[Manifest]) -> None:
    container = api_container(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["startupProbe"]["httpGet"]["path"] == HEALTH_LIVE
    assert container["readinessProbe"]["httpGet"]["path"] == HEALTH_READY
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    # The gRPC port has its own probe: grpc.health.v1 on it, the service the server answers
    # SERVING for while the process is alive (tests/e2e/test_grpc_serve.py).
    grpc = container["livenessProbe"]["grpc"]
    assert grpc == {"port": ports["grpc"], "service": "liveness"}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["CHURN_GRPC_PORT"] == str(ports["grpc"])


def test_api_grace_period_outlasts_prestop_and_graceful_shutdown(
    rendered: list[Manifest],
) -> None:
    deployment = find(rendered, "Deployment", API)
    container = api_container(rendered)
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        pre_stop_seconds = float(pre_stop["sleep"]["seconds"])
    else:
        command = pre_stop["exec"]["command"]
        assert command[:1] == ["sleep"], f"preStop is not a sleep: {command}"
        pre_stop_seconds = float(command[1])
    shutdown = graceful_shutdown_seconds(env_value(container, "CHURN_GRACEFUL_SHUTDOWN_SECONDS"))
    log_flush = setting_number(
        "prediction_log_shutdown_timeout_seconds",
        env_value(container, "CHURN_PREDICTION_LOG_SHUTDOWN_TIMEOUT_SECONDS"),
    )
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop_seconds + shutdown + log_flush, (
        f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop_seconds} s + "
        f"graceful shutdown {shutdown} s + prediction-log flush {log_flush} s, or the kubelet "
        "kills requests still in flight or predictions not yet written"
    )


def test_api_writes_only_to_empty_dirs(rendered: list[Manifest]) -> None:
    deployment = find(rendered, "Deployment", API)
    container = api_container(rendered)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    numba_cache = env_value(container, "NUMBA_CACHE_DIR")
    assert numba_cache is not None
    for path in (numba_cache, "/app/var"):
        covering = [m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")]
        assert covering, f"{path} is on the read-only root filesystem"
        assert all("emptyDir" in mounts[m] for m in covering)


def test_api_spreads_over_nodes(rendered: list[Manifest], kustomization: str) -> None:
    spec = find(rendered, "Deployment", API)["spec"]["template"]["spec"]
    by_key = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
    assert len(by_key) == len(spec["topologySpreadConstraints"]), "one constraint per key"
    node_spread = by_key["kubernetes.io/hostname"]
    assert node_spread["maxSkew"] == 1
    expected = "DoNotSchedule" if kustomization == "overlays/production" else "ScheduleAnyway"
    assert node_spread["whenUnsatisfiable"] == expected


def test_api_replica_count_is_left_to_the_hpa(rendered: list[Manifest]) -> None:
    # A `replicas` field would reset the HPA's count on every apply.
    assert "replicas" not in find(rendered, "Deployment", API)["spec"]


# --------------------------------------------------------------------------- autoscaling


def test_hpa_keeps_two_pods_and_targets_the_api(rendered: list[Manifest]) -> None:
    hpa = find(rendered, "HorizontalPodAutoscaler", API)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", API)


# docs/capacity.md plans for up to this load; production's HPA must be able to reach it.
PLANNED_PEAK_RPS = 10_000


def test_hpa_scales_on_cpu_memory_and_requests_per_second(
    rendered: list[Manifest], kustomization: str
) -> None:
    metrics = find(rendered, "HorizontalPodAutoscaler", API)["spec"]["metrics"]
    resource_targets = {
        m["resource"]["name"]: m["resource"]["target"] for m in metrics if m["type"] == "Resource"
    }
    assert resource_targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    pods = [m["pods"] for m in metrics if m["type"] == "Pods"]
    # The course's 100 per pod, except where the capacity plan put its measured target.
    per_pod = "4600" if kustomization == "overlays/production" else "100"
    assert pods == [
        {
            "metric": {"name": "churn_http_requests_per_second"},
            "target": {"type": "AverageValue", "averageValue": per_pod},
        }
    ]


def test_production_hpa_can_reach_the_planned_peak(renders: dict[str, list[Manifest]]) -> None:
    spec = find(renders["overlays/production"], "HorizontalPodAutoscaler", API)["spec"]
    (per_pod,) = [m["pods"]["target"]["averageValue"] for m in spec["metrics"] if "pods" in m]
    assert spec["maxReplicas"] * float(per_pod) >= PLANNED_PEAK_RPS


def test_hpa_scales_up_faster_than_down(rendered: list[Manifest]) -> None:
    behavior = find(rendered, "HorizontalPodAutoscaler", API)["spec"]["behavior"]
    up, down = behavior["scaleUp"], behavior["scaleDown"]
    assert down["stabilizationWindowSeconds"] > up["stabilizationWindowSeconds"]
    assert up.get("selectPolicy", "Max") == "Max"
    up_percent = max(p["value"] for p in up["policies"] if p["type"] == "Percent")
    down_percent = max(p["value"] for p in down["policies"] if p["type"] == "Percent")
    assert up_percent > down_percent


def test_hpa_requests_metric_is_served_by_the_adapter_rule(rendered: list[Manifest]) -> None:
    metrics = find(rendered, "HorizontalPodAutoscaler", API)["spec"]["metrics"]
    wanted = {m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"}
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]
    served: dict[str, dict[str, Any]] = {rule["name"]["as"]: rule for rule in rules}
    assert wanted <= set(served), f"no adapter rule serves {wanted - set(served)}"
    for name in wanted:
        rule = served[name]
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])
        assert series, rule["seriesQuery"]
        assert series[0] in EXPORTED_METRICS, f"the service exports no {series[0]}"
        assert re.search(rule["name"]["matches"], series[0])
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        # A counter becomes a per-second rate per pod, the unit of the HPA's AverageValue.
        assert "rate(<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
        assert "by (<<.GroupBy>>)" in rule["metricsQuery"]


def test_vpa_never_acts_on_a_resource_the_hpa_scales_on(renders: dict[str, list[Manifest]]) -> None:
    assert any(of_kind(objects, "VerticalPodAutoscaler") for objects in renders.values())
    for objects in renders.values():
        for vpa in of_kind(objects, "VerticalPodAutoscaler"):
            target = vpa["spec"]["targetRef"]
            hpas = [
                h
                for h in of_kind(objects, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == target["name"]
            ]
            hpa_resources = {
                m["resource"]["name"]
                for h in hpas
                for m in h["spec"]["metrics"]
                if m["type"] == "Resource"
            }
            # Absent, the update mode is the VPA's default, which acts.
            if vpa["spec"].get("updatePolicy", {}).get("updateMode") == "Off":
                continue
            for policy in vpa["spec"].get("resourcePolicy", {}).get("containerPolicies", []):
                if policy.get("mode") == "Off":
                    continue
                acted_on = set(policy.get("controlledResources", ["cpu", "memory"]))
                both = acted_on & hpa_resources
                assert not both, f"VPA {vpa['metadata']['name']} and the HPA both control {both}"


def test_vpa_bounds_contain_the_api_requests(renders: dict[str, list[Manifest]]) -> None:
    for objects in renders.values():
        for vpa in of_kind(objects, "VerticalPodAutoscaler"):
            requests = api_container(objects)["resources"]["requests"]
            for policy in vpa["spec"]["resourcePolicy"]["containerPolicies"]:
                assert policy["containerName"] == API_CONTAINER
                for name in ("cpu", "memory"):
                    low = quantity(policy["minAllowed"][name])
                    high = quantity(policy["maxAllowed"][name])
                    assert low <= quantity(requests[name]) <= high


def test_pdb_leaves_a_pod_serving_at_the_hpa_minimum(rendered: list[Manifest]) -> None:
    budget = find(rendered, "PodDisruptionBudget", API)["spec"]
    minimum = find(rendered, "HorizontalPodAutoscaler", API)["spec"]["minReplicas"]
    if "maxUnavailable" in budget:
        assert 1 <= budget["maxUnavailable"] < minimum
    else:
        assert 1 <= budget["minAvailable"] < minimum


def test_database_pools_of_the_most_pods_fit_in_max_connections(rendered: list[Manifest]) -> None:
    hpa = find(rendered, "HorizontalPodAutoscaler", API)["spec"]
    surge = find(rendered, "Deployment", API)["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    config = find(rendered, "ConfigMap", "churn-api-config")["data"]
    # SQLAlchemy's pool and its overflow, the customer reads' own connections, and the
    # prediction log's one (db/prediction_log/pg_copy.py), for the pod's one worker.
    per_pod = 1 + sum(
        setting_number(name, config.get(f"CHURN_{name.upper()}"))
        for name in ("db_pool_size", "db_max_overflow", "db_read_pool_size")
    )
    conf = (K8S.parent / "postgres" / "postgresql.conf").read_text()
    (max_connections,) = re.findall(r"^max_connections\s*=\s*(\d+)", conf, flags=re.MULTILINE)
    # PostgreSQL's superuser_reserved_connections (3) and a few sessions for people and tools.
    available = int(max_connections) - 10
    assert (hpa["maxReplicas"] + int(surge)) * per_pod <= available
