"""The Kubernetes deployment without a cluster: the Helm chart (deploy/helm/digitnet) rendered by a real Helm (its Go
SDK, helm-python-sdk) for its defaults and the variants that change what it makes, every object validated strictly
against the Kubernetes API's own schemas (kubernetes-validate) of the newest version bundled and of the oldest the
chart claims, `helm lint`, the values schema refusing bad values, what the objects must say for the server to run
and drain as docs/kubernetes.md describes, and the plain manifests (deploy/kubernetes) current.

Not tested here: a real cluster (scheduling, the kubelet's probes, endpoints, DNS, the HPA, the Job's controller).
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import kubernetes_validate
import opentelemetry.environment_variables
import opentelemetry.sdk.environment_variables
import pytest
import yaml
from helm_python import HelmRenderError, HelmValuesError, lint

from digitnet.service.settings.server import ServerSettings

from .conftest import REPO, load_tool

manifests = load_tool("render_manifests")
CHART = manifests.CHART
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
#: The newest Kubernetes whose schemas kubernetes-validate bundles, and the oldest the chart's kubeVersion allows.
NEWEST = kubernetes_validate.latest_version()
OLDEST = CHART_META["kubeVersion"].removeprefix(">=").removesuffix("-0")
#: Kinds that are not Kubernetes' own (CRDs): no schema to validate against, checked by hand below.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
#: Every setting of `digitnet serve`, as its environment variable.
SERVER_VARIABLES = {f"DIGITNET_{name.upper()}" for name in ServerSettings.model_fields}
#: The OTEL_* variables OpenTelemetry's API and SDK read (config may set them: tracing).
OTEL_VARIABLES = {
    value
    for module in (opentelemetry.environment_variables, opentelemetry.sdk.environment_variables)
    for name, value in vars(module).items()
    if name.startswith("OTEL_") and isinstance(value, str)
}

#: The request rate each pod should average: 500 calls a second (a custom-metrics adapter's rule makes the metric).
REQUEST_RATE = {"type": "AverageValue", "averageValue": "500"}
BATCH = {"enabled": True, "shards": 5, "input": {"claimName": "digits-in"}, "output": {"claimName": "digits-out"}}
#: The values a test renders with, by name: the defaults and every switch that changes the objects.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "tls": {"tls": {"enabled": True, "secretName": "digitnet-tls"}},
    "mutual-tls": {"tls": {"enabled": True, "secretName": "digitnet-tls", "clientCA": True}, "batch": BATCH},
    "tls-no-http": {"tls": {"enabled": True, "secretName": "digitnet-tls"}, "server": {"httpPort": 0}},
    "token-existing-secret": {"token": {"enabled": True, "existingSecret": "digitnet-token", "secretKey": "bearer"}},
    "token-created": {"token": {"enabled": True, "value": "s3cret"}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "three-replicas": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "batch": {"batch": BATCH, "token": {"enabled": True, "value": "s3cret"}},
    "models-from-a-pvc": {"models": {"existingClaim": "digitnet-models"}, "server": {"watch": True}},
    "models-from-a-volume": {"models": {"volume": {"nfs": {"server": "nfs.example", "path": "/models", "readOnly": True}}}},
    "exec-prestop-no-metrics": {"shutdown": {"preStopAction": "exec"}, "server": {"metricsPort": 0}, "networkPolicy": {"enabled": False}},
    "request-rate-and-serving-peers": {
        "autoscaling": {"metrics": [{"type": "Pods", "pods": {"metric": {"name": "digitnet_requests_per_second"}, "target": REQUEST_RATE}}]},
        "networkPolicy": {"servingFrom": [{"podSelector": {"matchLabels": {"role": "client"}}}]},
        "config": {"DIGITNET_MAX_BATCH_DELAY_MS": "2", "DIGITNET_MIN_CONFIDENCE": 0.6, "OTEL_TRACES_EXPORTER": "otlp"},
    },
}


@functools.cache
def _rendered(variant: str) -> str:
    return json.dumps(manifests.objects(manifests.render(VARIANTS[variant])))


def render(variant: str) -> list[dict[str, Any]]:
    """The objects the chart makes with a variant's values (a fresh copy each call)."""
    objects: list[dict[str, Any]] = json.loads(_rendered(variant))
    return objects


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def pod_spec(objects: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, kind)["spec"]["template"]["spec"]
    return spec


def server(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = pod_spec(objects)["containers"][0]
    return container


def env(container: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: {name: value, or the valueFrom object}."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The server's DIGITNET_* settings as its pod reads them: the ConfigMap (envFrom), then env."""
    config = one(objects, "ConfigMap")["data"]
    assert [source["configMapRef"]["name"] for source in server(objects)["envFrom"]] == [one(objects, "ConfigMap")["metadata"]["name"]]
    return {**config, **{k: v for k, v in env(server(objects)).items() if isinstance(v, str)}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_for_kubernetes(variant: str) -> None:
    objects = render(variant)
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        for version in (NEWEST, OLDEST):
            # strict: unknown fields are errors too; a kind Kubernetes does not have (SchemaNotFoundError) fails.
            kubernetes_validate.validate(obj, version, strict=True)


def test_validated_against_the_newest_kubernetes_bundled_and_the_oldest_the_chart_allows() -> None:
    newest = tuple(int(part) for part in NEWEST.split("."))
    assert newest >= (1, 37, 0), f"kubernetes-validate bundles {NEWEST}: older than when the chart was written"
    assert OLDEST == "1.30.0"  # the preStop sleep action and backoffLimitPerIndex: beta, on by default, from 1.30
    removed = {"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # a removed API is refused, not skipped
        kubernetes_validate.validate(removed, NEWEST, strict=True)


def test_the_service_monitor_is_what_the_prometheus_operator_reads() -> None:
    objects = render("service-monitor")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prometheus"
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [manifests.NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    # It selects the Service that has the metrics port, by labels that Service carries.
    service = one(objects, "Service", "digitnet")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "metrics" in [port["name"] for port in service["spec"]["ports"]]
    assert not [o for o in render("default") if o["kind"] == "ServiceMonitor"], "a CRD's object must be off by default"


@pytest.mark.parametrize("variant", ["default", "batch", "mutual-tls"])
def test_helm_lint_finds_nothing(variant: str) -> None:
    report = lint(CHART, values=VARIANTS[variant], strict=True, kube_version=f"v{NEWEST}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicas": 3}, "additional properties 'replicas'"),  # a typo of replicaCount
        ({"server": {"grpcPort": "50051"}}, "/server/grpcPort"),
        ({"server": {"grpcPort": 70000}}, "/server/grpcPort"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"tag": 1}}, "/image/tag"),
        ({"server": {"threads": 0}}, "/server/threads"),  # 2 per CPU of the node, not of the pod
        ({"server": {"maxConcurrentRpcs": 0}}, "/server/maxConcurrentRpcs"),  # unbounded: no memory limit holds
        ({"shutdown": {"preStopSleepSeconds": 0}}, "/shutdown/preStopSleepSeconds"),
        ({"shutdown": {"preStopAction": "wait"}}, "/shutdown/preStopAction"),
        ({"token": {"enabled": "yes"}}, "/token/enabled"),
        ({"config": {"DIGITNET_TOKEN": "s3cret"}}, "DIGITNET_TOKEN"),  # a secret in a ConfigMap
        ({"config": {"DIGITNET_THREADS": "8"}}, "DIGITNET_THREADS"),  # the chart's own, sized with the memory limit
        ({"config": {"LOG_LEVEL": "debug"}}, "LOG_LEVEL"),
        ({"config": {"OTEL": "on"}}, "OTEL"),  # DIGITNET_* and OTEL_* names only
        ({"resources": {"requests": {"gpu": 1}, "limits": {}}}, "gpu"),
        ({"batch": {"shards": 0}}, "/batch/shards"),
        ({"autoscaling": {"metrics": [{"type": "Requests"}]}}, "/autoscaling/metrics/0/type"),
        ({"service": {"type": "Headless"}}, "/service/type"),
    ],
)
def test_the_values_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(HelmValuesError, match=complaint.replace("(", r"\(")):
        manifests.render(values)
    report = lint(CHART, values=values, strict=True)
    assert report["errors"], f"helm lint passed {values}"


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"token": {"enabled": True}}, "token.existingSecret"),
        ({"tls": {"enabled": True}}, "tls.secretName"),
        ({"tls": {"clientCA": True}}, "mutual TLS is TLS first"),
        ({"models": {"existingClaim": "a", "volume": {"emptyDir": {}}}}, "not both"),
        ({"serviceMonitor": {"enabled": True}, "server": {"metricsPort": 0}}, "server.metricsPort"),
        ({"batch": {"enabled": True}}, "batch.input.claimName"),
        ({"batch": BATCH, "headless": {"enabled": False}}, "headless"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, "minReplicas"),
        ({"server": {"httpPort": 50051}}, "port 50051 is used twice"),
    ],
)
def test_values_the_schema_cannot_judge_fail_the_render_in_one_line(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(HelmRenderError, match=complaint):
        manifests.render(values)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_runs_as_the_images_user_on_a_read_only_root(variant: str) -> None:
    objects = render(variant)
    for kind in ("Deployment", "Job"):
        if not [o for o in objects if o["kind"] == kind]:
            continue
        spec = pod_spec(objects, kind)
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,  # the Dockerfile's `useradd --uid 10001 digitnet`
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert spec["automountServiceAccountToken"] is False
        # The Service `digitnet` would otherwise give every pod DIGITNET_PORT=tcp://IP:50051, the server's port setting.
        assert spec["enableServiceLinks"] is False
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001 and context["runAsGroup"] == 10001
            assert context["capabilities"] == {"drop": ["ALL"]} and context["seccompProfile"] == {"type": "RuntimeDefault"}
            # Where it may write: /tmp (an emptyDir, also HOME: onnxruntime keeps a cache under ~/.cache), and the
            # Job's output; every other mount is read-only.
            assert env(container)["HOME"] == "/tmp" and env(container)["PYTHONDONTWRITEBYTECODE"] == "1"
            writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert writable == ({"/tmp", "/data/out"} if container["name"] == "score" else {"/tmp"}), container["name"]
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_the_server_serves_every_model_of_the_image_on_every_interface() -> None:
    objects = render("default")
    container = server(objects)
    assert container["image"] == f"digitnet:{CHART_META['appVersion']}" and container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == ["serve"]  # the image's ENTRYPOINT is digitnet
    config = settings(objects)
    assert config["DIGITNET_HOST"] == "0.0.0.0" and config["DIGITNET_MODEL_REPOSITORY"] == "/app/models"
    assert not [m for m in container["volumeMounts"] if m["mountPath"] == "/app/models"], "the image's models, by default"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(config["DIGITNET_PORT"]), "http": int(config["DIGITNET_HTTP_PORT"]), "metrics": int(config["DIGITNET_METRICS_PORT"])}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_setting_the_chart_gives_is_a_real_server_setting(variant: str) -> None:
    # A misspelt DIGITNET_* variable is ignored by the server (extra="ignore"): the chart would set nothing.
    objects = render(variant)
    assert set(settings(objects)) - {"HOME", "PYTHONDONTWRITEBYTECODE"} <= SERVER_VARIABLES | OTEL_VARIABLES
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["config"]["propertyNames"]["not"]["enum"]) <= SERVER_VARIABLES


def test_the_memory_limit_is_the_measured_one_for_the_same_settings() -> None:
    # docs/benchmarks.md measured 847-926 MiB at docker-compose's settings under its 1 GiB limit: the chart sizes
    # its pods from that measurement, so it must run the server with the same bounds.
    objects = render("default")
    compose = COMPOSE["services"]["server"]
    config = settings(objects)
    for variable in ("DIGITNET_THREADS", "DIGITNET_MAX_CONCURRENT_RPCS", "DIGITNET_WORKERS"):
        assert config[variable] == compose["environment"][variable], variable
    assert compose["deploy"]["resources"]["limits"]["memory"] == "1g"
    resources = server(objects)["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == "1Gi"
    assert resources["limits"]["cpu"] == compose["deploy"]["resources"]["limits"]["cpus"] == "2"


@pytest.mark.parametrize("variant", ["default", "token-created", "models-from-a-pvc", "three-replicas"])
def test_probes_ask_the_grpc_health_service_natively(variant: str) -> None:
    container = server(render(variant))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handler = {k: v for k, v in container[probe].items() if k in ("grpc", "httpGet", "tcpSocket", "exec")}
        assert handler == {"grpc": {"port": 50051, "service": ""}}, probe
    # A minute or more to start; liveness tolerates 30 s without an answer.
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30 and liveness["timeoutSeconds"] >= 2


def test_with_tls_the_probes_use_what_the_kubelet_can_speak() -> None:
    # The kubelet's gRPC probe has no TLS: HTTPS on the HTTP port (no certificate check), the OIP's health routes.
    tls = server(render("tls"))
    assert tls["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http", "scheme": "HTTPS"}
    assert tls["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http", "scheme": "HTTPS"}
    assert tls["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http", "scheme": "HTTPS"}
    # Client certificates required, or no HTTP: a TCP connect to the gRPC port.
    for variant in ("mutual-tls", "tls-no-http"):
        container = server(render(variant))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["tcpSocket"] == {"port": "grpc"} and "grpc" not in container[probe], (variant, probe)


@pytest.mark.parametrize("variant", ["default", "exec-prestop-no-metrics"])
def test_the_grace_period_covers_the_whole_drain(variant: str) -> None:
    objects = render(variant)
    spec, config = pod_spec(objects), settings(objects)
    pre_stop = server(objects)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        slept = pre_stop["sleep"]["seconds"]
    else:
        command = pre_stop["exec"]["command"]
        assert command[:2] == ["/bin/sh", "-c"] and command[2].startswith("sleep ")
        slept = int(command[2].removeprefix("sleep "))
    assert slept >= 1
    drain, grace = float(config["DIGITNET_DRAIN_SECONDS"]), float(config["DIGITNET_GRACE_SECONDS"])
    assert drain >= 1 and grace >= 1
    # Kubernetes' clock starts before preStop; SIGKILL comes at the end of the period.
    assert spec["terminationGracePeriodSeconds"] >= slept + drain + grace + 1
    assert spec["terminationGracePeriodSeconds"] == 25 and (slept, drain, grace) == (5, 5, 10)
    assert one(objects, "Deployment")["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_the_services_name_their_protocols_and_the_headless_one_lists_every_pod() -> None:
    objects = render("default")
    deployment_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service, headless = one(objects, "Service", "digitnet"), one(objects, "Service", "digitnet-headless")
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"], p["appProtocol"]) for p in service["spec"]["ports"]] == [
        ("grpc", 50051, "grpc", "kubernetes.io/h2c"),
        ("http", 8080, "http", "http"),
        ("metrics", 9100, "metrics", "http"),
    ]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    assert [(p["name"], p["port"], p["appProtocol"]) for p in headless["spec"]["ports"]] == [("grpc", 50051, "kubernetes.io/h2c")]
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= deployment_labels.items()
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "server"  # never the Job's pods
    # With TLS the ports carry HTTPS, not cleartext HTTP/2.
    tls = one(render("tls"), "Service", "digitnet")
    assert [p["appProtocol"] for p in tls["spec"]["ports"]] == ["https", "https", "http"]


def test_autoscaling_is_on_cpu_with_autoscaling_v2_and_owns_the_replica_count() -> None:
    objects = render("default")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "digitnet"}
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in one(objects, "Deployment")["spec"], "helm upgrade would reset what the HPA chose"
    # The request rate, as a Pods metric through an adapter, beside CPU.
    metrics = one(render("request-rate-and-serving-peers"), "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource", "Pods"] and metrics[1]["pods"]["metric"]["name"] == "digitnet_requests_per_second"
    # Off: a fixed count.
    fixed = render("three-replicas")
    assert one(fixed, "Deployment")["spec"]["replicas"] == 3 and not [o for o in fixed if o["kind"] == "HorizontalPodAutoscaler"]


def test_disruptions_take_one_pod_at_a_time() -> None:
    objects = render("default")
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]


def test_the_network_policy_opens_the_serving_ports_and_the_metrics_port_to_prometheus() -> None:
    policy = one(render("default"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    serving, metrics = policy["spec"]["ingress"]
    assert serving["ports"] == [{"port": "grpc", "protocol": "TCP"}, {"port": "http", "protocol": "TCP"}] and "from" not in serving
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    # Serving limited to some peers: the batch Job's pods are still let in.
    serving = one(render("request-rate-and-serving-peers"), "NetworkPolicy")["spec"]["ingress"][0]
    job_pods = {"app.kubernetes.io/name": "digitnet", "app.kubernetes.io/instance": "digitnet", "app.kubernetes.io/component": "batch"}
    assert serving["from"] == [{"podSelector": {"matchLabels": {"role": "client"}}}, {"podSelector": {"matchLabels": job_pods}}]
    assert one(render("batch"), "Job")["spec"]["template"]["metadata"]["labels"] == job_pods


@pytest.mark.parametrize("variant", ["token-existing-secret", "token-created"])
def test_the_token_comes_from_a_secret(variant: str) -> None:
    objects = render(variant)
    reference = env(server(objects))["DIGITNET_TOKEN"]["secretKeyRef"]
    assert "DIGITNET_TOKEN" not in one(objects, "ConfigMap")["data"]
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if variant == "token-existing-secret":
        assert reference == {"name": "digitnet-token", "key": "bearer"} and secrets == []
    else:
        (secret,) = secrets
        assert reference == {"name": secret["metadata"]["name"], "key": "token"}
        assert base64.b64decode(secret["data"]["token"]).decode() == "s3cret"
        # A new token rolls the pods, which read it once, at start.
        assert "checksum/token" in one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "DIGITNET_TOKEN" not in env(server(render("default")))


@pytest.mark.parametrize("variant", ["tls", "mutual-tls"])
def test_tls_files_are_mounted_read_only_from_a_secret(variant: str) -> None:
    objects = render(variant)
    spec, container = pod_spec(objects), server(objects)
    volume = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == "digitnet-tls"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
    assert mount["readOnly"] is True
    variables = env(container)
    expected = {"DIGITNET_TLS_CERT": "tls.crt", "DIGITNET_TLS_KEY": "tls.key"}
    if variant == "mutual-tls":
        expected["DIGITNET_TLS_CLIENT_CA"] = "ca.crt"
    assert {k: v for k, v in variables.items() if k.startswith("DIGITNET_TLS")} == {k: f"{mount['mountPath']}/{f}" for k, f in expected.items()}
    assert {"DIGITNET_TLS_CERT", "DIGITNET_TLS_KEY", "DIGITNET_TLS_CLIENT_CA"} <= SERVER_VARIABLES


@pytest.mark.parametrize("variant", ["models-from-a-pvc", "models-from-a-volume"])
def test_models_from_a_volume_replace_the_images(variant: str) -> None:
    objects = render(variant)
    spec, container = pod_spec(objects), server(objects)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/app/models"]
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    if variant == "models-from-a-pvc":
        assert volume["persistentVolumeClaim"] == {"claimName": "digitnet-models", "readOnly": True}
        assert settings(objects)["DIGITNET_WATCH"] == "true"
    else:
        assert volume["nfs"] == {"server": "nfs.example", "path": "/models", "readOnly": True}


def test_the_batch_job_is_indexed_one_shard_per_pod_through_the_headless_service() -> None:
    objects = render("batch")
    job = one(objects, "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 5
    assert spec["backoffLimitPerIndex"] >= 1 and spec["template"]["spec"]["restartPolicy"] == "Never"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    headless = one(objects, "Service", "digitnet-headless")
    target = f"dns:///{headless['metadata']['name']}:{headless['spec']['ports'][0]['port']}"
    assert container["image"] == server(objects)["image"]
    assert container["args"] == [
        "score", "/data/in", "--server", target, "--shard", "$(SHARD_INDEX)/5", "--out", "/data/out/shard-$(SHARD_INDEX).csv", "--resume",
        "--workers", "4", "--quiet",
    ]  # fmt: skip
    # $(SHARD_INDEX) expands only for a variable the container declares: the Job controller's completion index.
    assert env(container)["SHARD_INDEX"] == {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env(container)["DIGITNET_TOKEN"] == env(server(objects))["DIGITNET_TOKEN"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["/data/in"]["readOnly"] is True and volumes[mounts["/data/in"]["name"]]["persistentVolumeClaim"]["claimName"] == "digits-in"
    assert volumes[mounts["/data/out"]["name"]]["persistentVolumeClaim"]["claimName"] == "digits-out"
    # It waits for a SERVING server first, as compose's batch job waits for a healthy one.
    (wait,) = pod["initContainers"]
    assert wait["command"][-1] == target and "digitnet health --address" in wait["command"][2]
    assert not [o for o in render("default") if o["kind"] == "Job"], "the batch Job is off by default"


def test_the_batch_job_trusts_a_tls_server_and_presents_a_client_certificate() -> None:
    objects = render("mutual-tls")
    pod = pod_spec(objects, "Job")
    for container in pod["initContainers"] + pod["containers"]:
        variables = env(container)
        assert variables["DIGITNET_TLS_CA"] == "/etc/digitnet/tls/ca.crt"
        assert variables["DIGITNET_TLS_CLIENT_CERT"] == "/etc/digitnet/tls/tls.crt"
        assert variables["DIGITNET_TLS_CLIENT_KEY"] == "/etc/digitnet/tls/tls.key"
    assert next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "digitnet-tls"


def test_other_settings_reach_the_configmap_as_strings() -> None:
    config = one(render("request-rate-and-serving-peers"), "ConfigMap")["data"]
    assert config["DIGITNET_MAX_BATCH_DELAY_MS"] == "2" and config["DIGITNET_MIN_CONFIDENCE"] == "0.6"
    assert config["OTEL_TRACES_EXPORTER"] == "otlp"  # tracing's standard variables, beside the server's own


def test_a_settings_change_rolls_the_pods() -> None:
    def checksum(variant: str) -> str:
        annotation: str = one(render(variant), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return annotation

    assert checksum("default") != checksum("request-rate-and-serving-peers")


def test_the_plain_manifests_are_the_chart_rendered_with_its_defaults() -> None:
    assert manifests.MANIFESTS.read_text() == manifests.manifests(), "the chart changed: run ./dev run python tools/render_manifests.py"
    plain = list(yaml.safe_load_all(manifests.MANIFESTS.read_text()))
    assert plain == render("default")
    assert [o["kind"] for o in plain] == [
        "ServiceAccount", "ConfigMap", "Service", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
    ]  # fmt: skip
