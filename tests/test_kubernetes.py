"""deploy/kubernetes/, checked offline (no cluster here): the core kinds against the Kubernetes
OpenAPI schemas that kubernetes-validate ships (strict: an unknown field is an error), KEDA's
ScaledObject and the Prometheus Operator's ServiceMonitor against models generated from their
CRDs (cloudcoil-models-keda, from KEDA 2.16's CRDs; cloudcoil-models-prometheus-operator), and
everything against the dispatcher's own configuration.

A kafka trigger's `metadata` is a free map in KEDA's CRD, so its keys are checked against the
parameter list of KEDA's Apache Kafka scaler documentation (keda.sh, docs 2.16, "Apache Kafka":
kedacore/keda-docs, content/docs/2.16/scalers/apache-kafka.md), written out below; the ScaledObject
fields are those of KEDA's "ScaledObject specification" (content/docs/2.15/reference/
scaledobject-spec.md), which the CRD models enforce.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

from dispatcher.config_loader import load_settings
from tests.pipeline import REPO

K8S = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"  # the oldest minor still commonly run; the schemas are stricter later
CORE_KINDS = {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service", "Job"}
CRD_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "ScaledObject": ScaledObject,
    "ServiceMonitor": ServiceMonitor,
}
# The kafka scaler's parameters (KEDA docs 2.16, Apache Kafka, "Parameter list"); the
# authentication ones (sasl, tls, ...) may be given in the trigger's metadata too.
KAFKA_SCALER_PARAMETERS = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "version", "partitionLimitation",
    "sasl", "saslTokenProvider", "tls", "unsafeSsl", "awsRegion",
}  # fmt: skip
KAFKA_SCALER_REQUIRED = {"bootstrapServers", "consumerGroup"}


def load_manifests() -> dict[str, dict[str, Any]]:
    """Kind -> manifest, one object per file."""
    manifests: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in manifests, f"{path.name}: a second {document['kind']}"
            manifests[document["kind"]] = document
    return manifests


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return load_manifests()


# ---------------------------------------------------------------------------------------------
# Validators: each returns its problems


def schema_problems(manifest: dict[str, Any]) -> list[str]:
    """A core kind against Kubernetes' OpenAPI schema, strictly."""
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def unknown_fields(model: type[pydantic.BaseModel], data: Any, path: str = "") -> list[str]:
    """Keys the CRD's model does not have (its models ignore extra keys: a typo would pass)."""
    if not isinstance(data, dict):
        return []
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    problems = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(f"{where}: unknown field; allowed: {', '.join(sorted(fields))}")
        else:
            problems += _unknown_in(fields[key].annotation, value, where)
    return problems


def _unknown_in(annotation: Any, value: Any, path: str) -> list[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return unknown_fields(annotation, value, path)
    if origin is list and isinstance(value, list):
        return [
            p for i, item in enumerate(value) for p in _unknown_in(args[0], item, f"{path}[{i}]")
        ]
    if origin is dict and isinstance(value, dict):
        return [
            p for key, item in value.items() for p in _unknown_in(args[1], item, f"{path}.{key}")
        ]
    if origin in (typing.Union, types.UnionType):
        readings = [_unknown_in(arg, value, path) for arg in args if arg is not type(None)]
        return min(readings, key=len) if readings else []
    return []


def crd_problems(manifest: dict[str, Any]) -> list[str]:
    """A custom resource against its CRD's model; a kafka trigger against KEDA's documentation."""
    model = CRD_MODELS[manifest["kind"]]
    problems = []
    try:
        model.model_validate(manifest)
    except pydantic.ValidationError as exc:
        problems += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    problems += unknown_fields(model, manifest)
    for i, trigger in enumerate(manifest.get("spec", {}).get("triggers", [])):
        if trigger.get("type") != "kafka":
            continue
        keys = set(trigger.get("metadata") or {})
        where = f"spec.triggers[{i}].metadata"
        problems += [
            f"{where}.{key}: not a kafka scaler parameter"
            for key in sorted(keys - KAFKA_SCALER_PARAMETERS)
        ]
        problems += [f"{where}.{key}: required" for key in sorted(KAFKA_SCALER_REQUIRED - keys)]
    return problems


def problems_of(manifest: dict[str, Any]) -> list[str]:
    return schema_problems(manifest) if manifest["kind"] in CORE_KINDS else crd_problems(manifest)


def test_every_file_is_a_known_kind(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == CORE_KINDS | set(CRD_MODELS)


@pytest.mark.parametrize("kind", sorted(CORE_KINDS | set(CRD_MODELS)))
def test_manifest_is_valid(kind: str, manifests: dict[str, dict[str, Any]]) -> None:
    assert problems_of(manifests[kind]) == []


def edited(
    manifest: dict[str, Any], path: str, value: Any = None, *, rename: str = ""
) -> dict[str, Any]:
    """A deep copy with the key at dotted `path` renamed, or set to `value`."""
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(manifest))
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    node: Any = copy
    for part in parents:
        node = node[part]
    if rename:
        node[rename] = node.pop(last)
    else:
        node[last] = value
    return copy


@pytest.mark.parametrize(
    ("kind", "path", "value", "rename"),
    [
        ("Deployment", "spec.template.spec.containers.0.livenessProbe", None, "livenesProbe"),
        ("Deployment", "spec.template.spec.securityContext.runAsNonRoot", "yes", ""),
        ("PodDisruptionBudget", "spec.maxUnavailable", None, "maxUnavailabe"),
        ("ConfigMap", "data", None, "datas"),
        ("ScaledObject", "spec.maxReplicaCount", None, "maxReplicas"),
        ("ScaledObject", "spec.triggers.0.metadata", None, "metdata"),
        ("ScaledObject", "spec.triggers.0.metadata.lagThreshold", None, "lagTreshold"),
        ("ScaledObject", "spec.triggers.0.metadata.consumerGroup", None, "group"),
        ("ScaledObject", "spec.scaleTargetRef.name", ["a", "list"], ""),
        ("ServiceMonitor", "spec.endpoints.0.port", None, "portName"),
    ],
)
def test_the_validators_catch_mistakes(
    kind: str, path: str, value: Any, rename: str, manifests: dict[str, dict[str, Any]]
) -> None:
    assert problems_of(edited(manifests[kind], path, value, rename=rename))


# ---------------------------------------------------------------------------------------------
# Consistency with the dispatcher and with each other


def pod_spec(manifests: dict[str, dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = manifests[kind]["spec"]["template"]["spec"]
    return spec


def config_volume(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(mount path, the ConfigMap volume) of the pod's configuration."""
    [container] = spec["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "config"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "config"]
    return mount["mountPath"], volume["configMap"]


def mounted_config(
    manifests: dict[str, dict[str, Any]], tmp_path: Path, kind: str = "Deployment"
) -> Path:
    """The files the pod sees at its mount path, laid out under tmp_path; the config file."""
    spec = pod_spec(manifests, kind)
    mount_path, config_map = config_volume(spec)
    assert config_map["name"] == manifests["ConfigMap"]["metadata"]["name"]
    data = manifests["ConfigMap"]["data"]
    for item in config_map["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    [container] = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = Path(env["DISPATCHER_CONFIG"])
    assert config.parent == Path(mount_path)
    return tmp_path / config.relative_to(mount_path)


def test_the_configmap_is_a_valid_configuration_as_mounted(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """What `dispatcher check-config` would say of the files as the pod sees them."""
    settings = load_settings(mounted_config(manifests, tmp_path), {"TIKTOK_ACCESS_TOKEN": "t"})
    assert {p.partner for p in settings.partners.partners} == {"tiktok", "oceanengine"}
    # every file of the ConfigMap is mounted (a partner file left out would be silently unused)
    _, config_map = config_volume(pod_spec(manifests))
    assert {item["key"] for item in config_map["items"]} == set(manifests["ConfigMap"]["data"])


def test_the_probes_scrape_and_service_use_the_configured_metrics_port(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    port = load_settings(
        mounted_config(manifests, tmp_path), {"TIKTOK_ACCESS_TOKEN": "t"}
    ).runtime.metrics.port
    spec = pod_spec(manifests)
    [container] = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    def probe_port(probe: dict[str, Any]) -> int:
        named = probe["httpGet"]["port"]
        return ports[named] if isinstance(named, str) else int(named)

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probe_port(container["livenessProbe"]) == probe_port(container["readinessProbe"]) == port
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    [service_port] = manifests["Service"]["spec"]["ports"]
    assert ports[service_port["targetPort"]] == port
    [endpoint] = manifests["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"


def test_termination_outlasts_the_graceful_stop(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    runtime = load_settings(
        mounted_config(manifests, tmp_path), {"TIKTOK_ACCESS_TOKEN": "t"}
    ).runtime
    grace = pod_spec(manifests)["terminationGracePeriodSeconds"]
    # the final commit and dead-letter flush come after the deliveries' bound
    assert grace >= runtime.worker.shutdown_timeout_s + 10


def test_runs_as_the_images_unprivileged_user_read_only(
    manifests: dict[str, dict[str, Any]],
) -> None:
    [user] = re.findall(r"^USER (\d+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    for kind in ("Deployment", "Job"):
        spec = pod_spec(manifests, kind)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == int(user)
        [container] = spec["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"requests", "limits"} <= set(container["resources"])


def test_the_token_comes_from_the_secret_and_nowhere_else(
    manifests: dict[str, dict[str, Any]],
) -> None:
    [container] = pod_spec(manifests)["containers"]
    [token] = [e for e in container["env"] if e["name"] == "TIKTOK_ACCESS_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    secret = manifests["Secret"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert ref.get("optional", False) is False  # no Secret, no pod: nothing sent with a placeholder
    assert secret["stringData"][ref["key"]].startswith("replace-")  # an example, never a token
    readme = (REPO / "docs" / "deploy" / "kubernetes.md").read_text()
    assert f"create secret generic {ref['name']} --from-literal={ref['key']}=" in readme


def test_the_scaledobject_watches_the_workers_group_topics_and_brokers(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    kafka = load_settings(
        mounted_config(manifests, tmp_path), {"TIKTOK_ACCESS_TOKEN": "t"}
    ).runtime.kafka
    spec = manifests["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    triggers = [t["metadata"] for t in spec["triggers"] if t["type"] == "kafka"]
    assert {t["topic"] for t in triggers} == {kafka.topics.installs, kafka.topics.in_app_events}
    for trigger in triggers:
        assert trigger["consumerGroup"] == kafka.group_id
        assert trigger["bootstrapServers"].split(",") == list(kafka.bootstrap_servers)
        assert trigger["offsetResetPolicy"] == kafka.auto_offset_reset
        assert trigger.get("allowIdleConsumers", "false") == "false"


def test_no_more_replicas_than_partitions(manifests: dict[str, dict[str, Any]]) -> None:
    """A partition is read by one member of the group: replicas beyond the partitions idle."""
    [container] = pod_spec(manifests, "Job")["containers"]
    args = container["args"]
    assert args[:2] == ["topics", "create"]
    partitions = int(args[args.index("--partitions") + 1])
    spec = manifests["ScaledObject"]["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert manifests["Deployment"]["spec"]["replicas"] <= partitions


def test_the_job_and_the_worker_share_image_and_configuration(
    manifests: dict[str, dict[str, Any]],
) -> None:
    worker, job = pod_spec(manifests), pod_spec(manifests, "Job")
    assert worker["containers"][0]["image"] == job["containers"][0]["image"]
    assert config_volume(worker) == config_volume(job)
    [env] = [e for e in job["containers"][0]["env"] if e["name"] == "DISPATCHER_CONFIG"]
    assert env in worker["containers"][0]["env"]


def test_selectors_match_the_pods(manifests: dict[str, dict[str, Any]]) -> None:
    labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selectors = [
        manifests["Deployment"]["spec"]["selector"]["matchLabels"],
        manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        manifests["Service"]["spec"]["selector"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    job_labels = manifests["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not manifests["Service"]["spec"]["selector"].items() <= job_labels.items()
    # The ServiceMonitor selects the Service and names the job the alert rules select
    monitor = manifests["ServiceMonitor"]["spec"]
    service_labels = manifests["Service"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= service_labels.items()
    assert service_labels[monitor["jobLabel"]] == "postback-dispatcher"
    alerts = (REPO / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert 'job="postback-dispatcher"' in alerts
