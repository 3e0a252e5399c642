"""The Helm chart (deploy/helm/tidings), rendered by the real ``helm`` and
checked by ``kubeconform -strict`` against schemas generated from Kubernetes'
OpenAPI document and the KEDA and Prometheus-operator CRDs (``infra.chart``),
for each values file. Then held to the deployment contract: every variable it
sets is a setting, secrets come only from Secret objects, probes, drain and
grace match the code, and each plane autoscales on its signal.

No cluster is needed; the tools are built once into ``~/.cache/tidings/go``
(``make chart-tools``).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.server.command import DRAIN_SECONDS
from infra.chart import ChartTools, ensure_chart_tools
from infra.settings import StackSettings, env_names
from tidings.settings import Settings
from tidings.topics import completions_topic
from workers.completions import DEFAULT_GROUP
from workflows.registry import dedicated_queue

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tidings"
VALUES = {
    "default": [],
    "kind": [CHART / "values-kind.yaml"],
    "managed": [CHART / "values-managed.yaml"],
}
# Settings that are secrets: they may only come from a secretKeyRef.
SECRET_SETTINGS = {
    "TIDINGS_TENANTS_API_KEYS",
    "TIDINGS_GATEWAY_TOKEN_SECRET",
    "TIDINGS_GATEWAY_TOKEN_SECRETS_PREVIOUS",
    "TIDINGS_REDIS_URL",
    "TIDINGS_MODEL_API_KEY",
}
_SECRET_WORDS = re.compile(r"SECRET|PASSWORD|API_KEY|REDIS_URL")

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def tools() -> ChartTools:
    return ensure_chart_tools(StackSettings().cache_dir)


def helm(tools: ChartTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.helm), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # helm keeps a config and cache folder: its own, away from the user's.
        env={"HOME": str(tools.helm.parent.parent / "helm-home"), "PATH": "/usr/bin:/bin"},
    )


def render(tools: ChartTools, values: list[Path], *sets: str) -> str:
    args = ["template", "tidings", str(CHART), "--namespace", "tidings"]
    args += ["--kube-version", tools.kubernetes_version]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    done = helm(tools, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[Manifest], kind: str, component: str) -> Manifest:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"{len(found)} {kind} for {component}"
    return found[0]


def containers(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc["metadata"]["name"], container


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {item["name"]: item for item in container.get("env", [])}


@pytest.mark.parametrize("name", VALUES)
def test_helm_lint(tools: ChartTools, name: str) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", tools.kubernetes_version]
    for path in VALUES[name]:
        args += ["-f", str(path)]
    done = helm(tools, *args)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "sets"),
    [
        ("default", ()),
        ("kind", ()),
        ("managed", ()),
        # Everything off, and the other worker signal, render valid too.
        ("default", ("worker.autoscaling.signal=kafka", "serviceMonitor.enabled=true")),
        (
            "default",
            (
                "gateway.autoscaling.enabled=false",
                "worker.autoscaling.enabled=false",
                "gateway.pdb.enabled=false",
                "worker.pdb.enabled=false",
                "worker.metricsPort=0",
                "pipelines.configMap=my-pipelines",
                "pipelines.names={mine}",
                "worker.activities={mysteps:activities}",
                "tlsFiles.secretName=tidings-tls",
            ),
        ),
    ],
)
def test_kubeconform_strict(tools: ChartTools, name: str, sets: tuple[str, ...]) -> None:
    text = render(tools, VALUES[name], *sets)
    done = subprocess.run(
        [
            str(tools.kubeconform),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-kubernetes-version",
            tools.kubernetes_version,
            # Local schemas only: no default (remote) location is ever tried.
            "-schema-location",
            tools.schema_location(),
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    docs = manifests(text)
    # Every document was checked against a schema: none invalid, none skipped.
    summary = f"Valid: {len(docs)}, Invalid: 0, Errors: 0, Skipped: 0"
    assert summary in done.stdout, done.stdout
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service"} <= kinds


def test_kubeconform_rejects_an_unknown_field(tools: ChartTools) -> None:
    """The generated schemas are strict: a misspelt field is an error, for a core
    kind and for a CRD kind alike."""
    docs = manifests(render(tools, []))
    deployment = by_kind(docs, "Deployment", "gateway")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    scaled = by_kind(docs, "ScaledObject", "worker")
    scaled["spec"]["minReplicas"] = 1
    for doc in (deployment, scaled):
        done = subprocess.run(
            [str(tools.kubeconform), "-strict", "-schema-location", tools.schema_location(), "-"],
            input=yaml.safe_dump(doc),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stdout
        assert "additional properties" in done.stdout.lower() or "not allowed" in done.stdout


@pytest.mark.parametrize("name", VALUES)
def test_every_variable_is_a_setting(tools: ChartTools, name: str) -> None:
    known = env_names()
    seen: set[str] = set()
    for deployment, container in containers(manifests(render(tools, VALUES[name]))):
        names = set(env_of(container))
        assert names <= known, f"{deployment} sets {sorted(names - known)}, not settings"
        seen |= names
    assert {"TIDINGS_TEMPORAL_ADDRESS", "TIDINGS_KAFKA_BOOTSTRAP_SERVERS"} <= seen


# Stand-ins for what the Secret objects hold, to build the settings from.
SECRET_SAMPLES = {
    "TIDINGS_TENANTS_API_KEYS": '{"k-acme-3b9d2f7e1c5a8046":"acme"}',
    "TIDINGS_GATEWAY_TOKEN_SECRET": "7c1e9a3f5b2d8e4a6c0f1b3d5e7a9c2e4f6a8b0d",
    "TIDINGS_GATEWAY_TOKEN_SECRETS_PREVIOUS": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4",
    # The password comes separately (TIDINGS_REDIS_PASSWORD), never in both.
    "TIDINGS_REDIS_URL": "rediss://redis.example.internal:6380/0",
    "TIDINGS_REDIS_PASSWORD": "redis-acl-password-sample",
    "TIDINGS_TEMPORAL_API_KEY": "temporal-cloud-api-key-sample",
    "TIDINGS_MODEL_API_KEY": "sk-test",
    "TIDINGS_KAFKA_SASL_USERNAME": "CKAPI4N7Q2EXAMPLE",
    "TIDINGS_KAFKA_SASL_PASSWORD": "kafka-api-secret-example",
}


@pytest.mark.parametrize("name", VALUES)
def test_settings_accept_what_the_chart_sets(
    tools: ChartTools, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each container's environment, secrets stood in for, builds valid settings
    (production mode included), as the process will at its start."""
    for variable in [v for v in os.environ if v.startswith("TIDINGS_")]:
        monkeypatch.delenv(variable)
    for deployment, container in containers(manifests(render(tools, VALUES[name]))):
        env = {
            variable: item["value"] if "value" in item else SECRET_SAMPLES[variable]
            for variable, item in env_of(container).items()
        }
        with monkeypatch.context() as scoped:
            for variable, value in env.items():
                scoped.setenv(variable, value)
            settings = Settings()
        assert settings.temporal.address == env["TIDINGS_TEMPORAL_ADDRESS"], deployment


def test_values_and_templates_name_only_settings() -> None:
    """Without rendering: every TIDINGS_* in the templates and in the values
    files' data (comments aside) is a setting."""
    known = env_names()
    text = "\n".join(p.read_text() for p in (CHART / "templates").glob("*"))
    for path in [CHART / "values.yaml", *(p for paths in VALUES.values() for p in paths)]:
        text += "\n" + yaml.safe_dump(yaml.safe_load(path.read_text()))
    used = set(re.findall(r"\bTIDINGS_[A-Z0-9_]*[A-Z0-9]\b", text))
    assert used, "no settings found"
    assert used <= known, sorted(used - known)


@pytest.mark.parametrize("name", VALUES)
def test_secrets_only_from_secret_objects(tools: ChartTools, name: str) -> None:
    docs = manifests(render(tools, VALUES[name]))
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not write Secrets"
    for deployment, container in containers(docs):
        env = env_of(container)
        for variable, item in env.items():
            if variable in SECRET_SETTINGS or _SECRET_WORDS.search(variable):
                assert "value" not in item, f"{deployment}: {variable} is literal"
                assert "secretKeyRef" in item["valueFrom"], f"{deployment}: {variable}"
        # Production refuses development credentials, so both planes need them.
        assert {"TIDINGS_TENANTS_API_KEYS", "TIDINGS_GATEWAY_TOKEN_SECRET"} <= set(env)


def test_a_literal_secret_is_refused(tools: ChartTools) -> None:
    done = helm(
        tools,
        "template",
        "tidings",
        str(CHART),
        "--set",
        "extraEnv.TIDINGS_GATEWAY_TOKEN_SECRET=hunter2hunter2",
    )
    assert done.returncode != 0
    assert "TIDINGS_GATEWAY_TOKEN_SECRET is a secret" in done.stderr
    assert "hunter2" not in done.stderr
    refused = helm(tools, "template", "tidings", str(CHART), "--set", "extraEnv.PATH=/x")
    assert "'PATH' does not match pattern '^TIDINGS_[A-Z0-9_]+$'" in refused.stderr


@pytest.mark.parametrize("name", VALUES)
def test_gateway_probes_and_drain(tools: ChartTools, name: str) -> None:
    gateway = by_kind(manifests(render(tools, VALUES[name])), "Deployment", "gateway")
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # The pod is killed only after the preStop sleep and the whole drain.
    assert pod["terminationGracePeriodSeconds"] > sleep + DRAIN_SECONDS
    # A new pod comes up before an old one drains.
    assert gateway["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize("name", VALUES)
def test_worker_grace_covers_running_activities(tools: ChartTools, name: str) -> None:
    worker = by_kind(manifests(render(tools, VALUES[name])), "Deployment", "worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    grace = float(env_of(container)["TIDINGS_WORKER_SHUTDOWN_GRACE_SECONDS"]["value"])
    assert pod["terminationGracePeriodSeconds"] >= grace + 10


def test_gateway_scales_on_cpu_and_sockets_per_pod(tools: ChartTools) -> None:
    docs = manifests(render(tools, VALUES["managed"]))
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == by_kind(docs, "Deployment", "gateway")["metadata"]["name"]
    )
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    pods = metrics["Pods"]["pods"]
    assert pods["metric"]["name"] == "tidings_stream_sockets"
    assert pods["target"] == {"type": "AverageValue", "averageValue": "5000"}
    assert by_kind(docs, "PodDisruptionBudget", "gateway")["spec"]["maxUnavailable"] == 1


def test_worker_scales_on_the_task_queue_or_kafka_lag(tools: ChartTools) -> None:
    docs = manifests(render(tools, VALUES["managed"]))
    worker = by_kind(docs, "Deployment", "worker")
    env = env_of(worker["spec"]["template"]["spec"]["containers"][0])
    scaled = by_kind(docs, "ScaledObject", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "temporal"
    meta = trigger["metadata"]
    assert meta["taskQueue"] == env["TIDINGS_TEMPORAL_TASK_QUEUE"]["value"]
    assert meta["namespace"] == env["TIDINGS_TEMPORAL_NAMESPACE"]["value"]
    assert meta["endpoint"] == env["TIDINGS_TEMPORAL_ADDRESS"]["value"]
    assert trigger["authenticationRef"] == {"name": "keda-temporal-cloud"}
    assert by_kind(docs, "PodDisruptionBudget", "worker")["spec"]["maxUnavailable"] == 1

    lag = manifests(render(tools, [], "worker.autoscaling.signal=kafka"))
    (trigger,) = by_kind(lag, "ScaledObject", "worker")["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == DEFAULT_GROUP
    assert trigger["metadata"]["topic"] == completions_topic("tidings")

    bad = helm(tools, "template", "tidings", str(CHART), "--set", "worker.autoscaling.signal=cpu")
    assert bad.returncode != 0
    assert "/worker/autoscaling/signal': value must be one of 'temporal', 'kafka'" in bad.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gatway.replicas=2", "additional properties 'gatway' not allowed"),
        ("kafka.partitions=0", "/kafka/partitions': minimum: got 0, want 1"),
        ("environment=staging", "/environment': value must be one of 'local', 'production'"),
        ("extraSecretEnv[0].env=PATH", "/extraSecretEnv/0"),
    ],
)
def test_bad_values_are_refused_by_name(tools: ChartTools, setting: str, message: str) -> None:
    """values.schema.json: a misspelt key or an out-of-range value stops helm
    with the value's path, before anything is rendered."""
    done = helm(tools, "template", "tidings", str(CHART), "--set", setting)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_service_monitors_scrape_both_planes(tools: ChartTools) -> None:
    docs = manifests(render(tools, VALUES["managed"]))
    gateway = by_kind(docs, "ServiceMonitor", "gateway")
    worker = by_kind(docs, "ServiceMonitor", "worker")
    assert gateway["spec"]["endpoints"][0]["port"] == "http"
    assert worker["spec"]["endpoints"][0]["port"] == "metrics"
    service = by_kind(docs, "Service", "worker")
    assert service["spec"]["ports"][0]["name"] == "metrics"
    # Off by default: a cluster without the operator has no such kind.
    kinds = {d["kind"] for d in manifests(render(tools, VALUES["kind"]))}
    assert "ServiceMonitor" not in kinds and "Deployment" in kinds


def test_own_pipelines_reach_the_workers_and_their_queues_are_watched(tools: ChartTools) -> None:
    """Workers read the folder and announce it (gateways find the pipelines in
    Redis), each such pipeline has a task queue of its own, and KEDA watches it."""
    docs = manifests(
        render(
            tools,
            [],
            "pipelines.configMap=my-pipelines",
            "pipelines.names={mine,theirs}",
            "worker.activities={mysteps:activities}",
        )
    )
    worker = by_kind(docs, "Deployment", "worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert container["args"] == ["worker", "--activities", "mysteps:activities"]
    folder = env_of(container)["TIDINGS_WORKER_PIPELINES_DIR"]["value"]
    assert {"name": "pipelines", "mountPath": folder, "readOnly": True} in container["volumeMounts"]
    assert {"name": "pipelines", "configMap": {"name": "my-pipelines"}} in worker["volumes"]
    gateway = by_kind(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    assert "TIDINGS_WORKER_PIPELINES_DIR" not in env_of(gateway["containers"][0])
    assert all(v["name"] != "pipelines" for v in gateway["volumes"])
    triggers = by_kind(docs, "ScaledObject", "worker")["spec"]["triggers"]
    queues = [t["metadata"]["taskQueue"] for t in triggers]
    assert queues == [
        "tidings",
        dedicated_queue("tidings", "mine"),
        dedicated_queue("tidings", "theirs"),
    ]


def test_certificate_files_come_from_a_secret_mounted_read_only(tools: ChartTools) -> None:
    """mTLS to Temporal and Kafka needs files, not variables: a Secret's keys are
    mounted in both planes, and the settings name the paths."""
    path = "/etc/tidings/tls/client.crt"
    docs = manifests(
        render(
            tools,
            [],
            "tlsFiles.secretName=tidings-tls",
            f"extraEnv.TIDINGS_TEMPORAL_TLS_CERT_FILE={path}",
        )
    )
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["tls-files"]["secret"]["secretName"] == "tidings-tls"
        (container,) = spec["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["tls-files"] == {
            "name": "tls-files",
            "mountPath": "/etc/tidings/tls",
            "readOnly": True,
        }
        assert env_of(container)["TIDINGS_TEMPORAL_TLS_CERT_FILE"]["value"] == path
    plain = manifests(render(tools, []))
    for deployment in (d for d in plain if d["kind"] == "Deployment"):
        names = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert "tls-files" not in names
