"""deploy/k8s stays valid Kubernetes and consistent with the services and their settings.

Every manifest is validated against the Kubernetes 1.37 OpenAPI schemas bundled with
``kubernetes-validate`` (offline, strict: unknown fields are errors). The rest checks that the
manifests describe the services that exist, with settings names the services really read.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import SecretStr

from runyard.devstack.services import SERVICES, ServiceDef
from runyard.shared.settings import DEV_SECRET_MARKER, MIN_SECRET_BYTES, ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37"
SECRET_TEMPLATE = "secret.example.yaml"
CONSUMER_SERVICES = {"notifications", "webhooks"}
#: the one-shot Job's own variables: the admin URL and the topic options of ``devstack topics``
JOB_VARIABLES = {
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "TOPIC_PARTITIONS",
    "TOPIC_REPLICATION_FACTOR",
    "TOPIC_MIN_INSYNC_REPLICAS",
}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [
        d
        for p in sorted(K8S.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in _documents(p)
    ]


def _one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _settings_class(service: ServiceDef) -> type[ServiceSettings]:
    cls: type[ServiceSettings] = importlib.import_module(f"{service.package}.config").Settings
    return cls


def _containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def _data(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    document = _one(manifests, kind, name)
    return dict(document.get("data") or document.get("stringData") or {})


def _resolve(env: dict[str, Any], config: dict[str, str], secrets: dict[str, str]) -> str:
    if "value" in env:
        return str(env["value"])
    source = env["valueFrom"]
    if "configMapKeyRef" in source:
        return config[source["configMapKeyRef"]["key"]]
    return secrets[source["secretKeyRef"]["key"]]


def test_every_manifest_is_valid_for_kubernetes(manifests: list[dict[str, Any]]) -> None:
    assert manifests
    for document in manifests:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE}

    assert sorted(kustomization["resources"]) == sorted(on_disk)
    assert kustomization["namespace"] == "runyard"


def test_everything_lives_in_the_runyard_namespace(manifests: list[dict[str, Any]]) -> None:
    for document in manifests:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "runyard", document["metadata"]["name"]
    assert _one(manifests, "Namespace", "runyard")


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_has_a_deployment_running_its_app_with_probes_and_resources(
    manifests: list[dict[str, Any]], service: ServiceDef
) -> None:
    deployment = _one(manifests, "Deployment", service.name)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]
    port = int(command[command.index("--port") + 1])

    assert command[:3] == ["uvicorn", "--factory", service.app]
    assert port == service.port
    assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    for box in _containers(pod):
        assert {"cpu", "memory"} <= box["resources"]["requests"].keys(), box["name"]
        assert "memory" in box["resources"]["limits"], box["name"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_has_a_service_selecting_its_pods(
    manifests: list[dict[str, Any]], service: ServiceDef
) -> None:
    svc = _one(manifests, "Service", service.name)
    labels = _one(manifests, "Deployment", service.name)["spec"]["template"]["metadata"]["labels"]

    assert svc["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_variable_a_service_gets_is_one_of_its_settings(
    manifests: list[dict[str, Any]], service: ServiceDef
) -> None:
    fields = _settings_class(service).model_fields
    pod = _one(manifests, "Deployment", service.name)["spec"]["template"]["spec"]

    for container in _containers(pod):
        for env in container.get("env", []):
            name = env["name"]
            assert name.startswith(service.prefix), f"{container['name']}: {name}"
            assert name.removeprefix(service.prefix).lower() in fields, f"not a setting: {name}"


def test_every_config_and_secret_key_referenced_exists(manifests: list[dict[str, Any]]) -> None:
    config = _data(manifests, "ConfigMap", "runyard-config")
    secrets = _data(_documents(K8S / SECRET_TEMPLATE), "Secret", "runyard-secrets")
    pods = [m["spec"]["template"]["spec"] for m in manifests if m["kind"] in ("Deployment", "Job")]

    for pod in pods:
        for container in _containers(pod):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    assert source["configMapKeyRef"]["name"] == "runyard-config"
                    assert source["configMapKeyRef"]["key"] in config, env["name"]
                if "secretKeyRef" in source:
                    assert source["secretKeyRef"]["name"] == "runyard-secrets"
                    assert source["secretKeyRef"]["key"] in secrets, env["name"]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_settings_given_to_a_service_start_it_in_production_once_secrets_are_set(
    manifests: list[dict[str, Any]], service: ServiceDef, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _data(manifests, "ConfigMap", "runyard-config")
    template = _data(_documents(K8S / SECRET_TEMPLATE), "Secret", "runyard-secrets")
    # what an operator puts in: real values, each at least MIN_SECRET_BYTES long
    filled = {
        k: v.replace(DEV_SECRET_MARKER, "real-").replace("CHANGE-ME", "x" * MIN_SECRET_BYTES)
        for k, v in template.items()
    }
    [container] = _one(manifests, "Deployment", service.name)["spec"]["template"]["spec"][
        "containers"
    ]
    for env in container["env"]:
        monkeypatch.setenv(env["name"], _resolve(env, config, filled))
    settings_class = _settings_class(service)

    settings = settings_class()
    with pytest.raises(ValueError, match="default development secret refused"):
        for env in container["env"]:  # the unedited template is refused
            monkeypatch.setenv(env["name"], _resolve(env, config, template))
        settings_class()

    assert settings.environment == "production"
    assert settings.kafka_bootstrap_servers == config["KAFKA_BOOTSTRAP_SERVERS"]


def test_every_secret_setting_of_every_service_comes_from_the_secret(
    manifests: list[dict[str, Any]],
) -> None:
    for service in SERVICES:
        fields = _settings_class(service).model_fields
        secret_settings = {
            f"{service.prefix}{name.upper()}"
            for name, field in fields.items()
            if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
        }
        [container] = _one(manifests, "Deployment", service.name)["spec"]["template"]["spec"][
            "containers"
        ]
        from_secret = {
            e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert secret_settings <= from_secret, service.name


def test_the_gateway_forwards_to_the_services_by_name_and_port(
    manifests: list[dict[str, Any]],
) -> None:
    [container] = _one(manifests, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}

    for service in SERVICES:
        if not service.upstream:
            continue
        match = re.fullmatch(r"http://([a-z-]+):(\d+)", env[service.gateway_url_env] or "")
        assert match, service.gateway_url_env
        svc = _one(manifests, "Service", match.group(1))
        assert int(match.group(2)) in [p["port"] for p in svc["spec"]["ports"]]
        assert match.group(1) == service.name


def test_the_consumer_services_scale_on_cpu_and_the_others_have_fixed_replicas(
    manifests: list[dict[str, Any]],
) -> None:
    autoscalers = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    config = _data(manifests, "ConfigMap", "runyard-config")

    assert {a["spec"]["scaleTargetRef"]["name"] for a in autoscalers} == CONSUMER_SERVICES
    for autoscaler in autoscalers:
        target = autoscaler["spec"]["scaleTargetRef"]
        deployment = _one(manifests, target["kind"], target["name"])
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        [metric] = autoscaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # more consumers than partitions would idle in the consumer group
        assert autoscaler["spec"]["maxReplicas"] <= int(config["TOPIC_PARTITIONS"])
        assert autoscaler["spec"]["minReplicas"] >= 2
    for service in SERVICES:
        if service.name not in CONSUMER_SERVICES:
            assert _one(manifests, "Deployment", service.name)["spec"]["replicas"] >= 2


def test_every_disruption_budget_covers_a_deployment(manifests: list[dict[str, Any]]) -> None:
    budgets = [m for m in manifests if m["kind"] == "PodDisruptionBudget"]
    deployments = [m for m in manifests if m["kind"] == "Deployment"]

    assert {b["metadata"]["name"] for b in budgets} == {s.name for s in SERVICES}
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"].items()
        assert [
            d
            for d in deployments
            if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ], budget["metadata"]["name"]


def test_pods_wait_for_the_migration_job_which_provisions_every_service(
    manifests: list[dict[str, Any]],
) -> None:
    job = _one(manifests, "Job", "runyard-migrate")
    pod = job["spec"]["template"]["spec"]
    [migrate] = pod["containers"]
    [topics] = pod["initContainers"]

    assert migrate["command"][:4] == ["python", "-m", "runyard.devstack", "provision"]
    assert topics["command"][:4] == ["python", "-m", "runyard.devstack", "topics"]
    job_env = {e["name"] for c in _containers(pod) for e in c["env"]}
    assert job_env - JOB_VARIABLES == {f"{s.prefix}DATABASE_URL" for s in SERVICES if s.database}
    for service in SERVICES:
        spec = _one(manifests, "Deployment", service.name)["spec"]["template"]["spec"]
        if not service.database:  # the console: nothing to migrate, nothing to wait for
            assert "initContainers" not in spec
            continue
        [wait] = spec["initContainers"]
        assert wait["command"][3:6] == ["wait-migrated", "--services", service.name]
        assert [e["name"] for e in wait["env"]] == [f"{service.prefix}DATABASE_URL"]


def test_the_secret_template_only_holds_placeholders() -> None:
    secrets = _data(_documents(K8S / SECRET_TEMPLATE), "Secret", "runyard-secrets")

    for key, value in secrets.items():
        assert DEV_SECRET_MARKER in value or "CHANGE-ME" in value or key.endswith("USERNAME"), key


def test_the_gateway_metrics_are_scraped_from_a_port_its_service_does_not_expose(
    manifests: list[dict[str, Any]],
) -> None:
    template = _one(manifests, "Deployment", "gateway")["spec"]["template"]
    [container] = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    scraped = int(template["metadata"]["annotations"]["prometheus.io/port"])

    assert scraped == ports["metrics"] == int(env["GATEWAY_METRICS_PORT"]) != ports["http"]
    assert env["GATEWAY_METRICS_HOST"] == "0.0.0.0"
    exposed = _one(manifests, "Service", "gateway")["spec"]["ports"]
    assert {p["targetPort"] for p in exposed} == {"http"}
