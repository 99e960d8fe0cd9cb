"""The server's Kubernetes pod spec run for real in the Docker daemon (tests/kube_pod.py), as a kubelet would run it:
as uid 10001 with its read-only root filesystem, no capabilities, no privilege escalation, the runtime's seccomp
profile, its env from a ConfigMap and a Secret, an emptyDir at /tmp. It must become ready through the gRPC health
check its probe names, classify a digit from the host with the Secret's token, and, deleted as the kubelet deletes a
pod (preStop, SIGTERM), drain and exit 0 within its grace period.

The runner's translation (every field carried out, handed to the test, or refused) is checked without Docker.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import GOLDEN, load_tool
from .docker_daemon import Docker
from .kube_pod import Obj, PodPlan, Unsupported, plan_pod, pod_template_spec, run_pod

TOKEN = "digitnet-pod-test-token"
#: The settings a chart would keep in a ConfigMap, read with envFrom.
CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "digitnet"},
    "data": {
        "DIGITNET_HOST": "0.0.0.0",
        "DIGITNET_PORT": "50051",
        "DIGITNET_HTTP_PORT": "8080",
        "DIGITNET_LOG_FORMAT": "json",
        "DIGITNET_THREADS": "2",
        "DIGITNET_MAX_CONCURRENT_RPCS": "8",
        "DIGITNET_DRAIN_SECONDS": "1",
        "DIGITNET_GRACE_SECONDS": "10",
    },
}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "digitnet-token"},
    "type": "Opaque",
    "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
}
#: The Deployment's pod spec as a good chart renders it (until the chart lands: see deployment_pod).
POD_SPEC: dict[str, Any] = {
    "automountServiceAccountToken": False,  # the server never calls the Kubernetes API
    "terminationGracePeriodSeconds": 20,  # preStop 2 s + drain 1 s + in-flight grace 10 s, with room to spare
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "digitnet",
            "image": "digitnet:latest",
            "imagePullPolicy": "IfNotPresent",
            "args": ["serve"],
            "ports": [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}, {"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "envFrom": [{"configMapRef": {"name": "digitnet"}}],
            "env": [{"name": "DIGITNET_TOKEN", "valueFrom": {"secretKeyRef": {"name": "digitnet-token", "key": "token"}}}],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            # Kubernetes' own gRPC probe asks grpc.health.v1 Check for the service "" (the server as a whole).
            "startupProbe": {"grpc": {"port": 50051}, "periodSeconds": 2, "failureThreshold": 60},
            "readinessProbe": {"grpc": {"port": 50051, "service": ""}, "periodSeconds": 5},
            "livenessProbe": {"grpc": {"port": 50051}, "periodSeconds": 10, "failureThreshold": 3},
            # Time for the Service's endpoints to drop the pod before the server stops taking calls.
            "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
}


def deployment_pod() -> tuple[Obj, list[Obj]]:
    """The pod spec under test, and the ConfigMaps and Secrets it names: the Helm chart's Deployment, rendered by
    Helm (tools/render_manifests.py) with a token from a created Secret, so that the test also proves the chart's
    settings, token wiring, securityContext and probes work together.

    The test replaces the image with the one it built, reads the token (if any) from the resolved DIGITNET_TOKEN,
    the health check's port and service from the readiness probe, the HTTP port from the port named "http" and
    the grace period from terminationGracePeriodSeconds; kube_pod refuses any field it would not carry out.
    """
    manifests = load_tool("render_manifests")
    documents = manifests.objects(manifests.render({"token": {"enabled": True, "value": TOKEN}}))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    return pod_template_spec(deployment), [d for d in documents if d["kind"] in ("ConfigMap", "Secret")]


def _plan(spec: Obj, tmp_path: Path, objects: list[Obj] | None = None, image_user: str = "10001:10001") -> PodPlan:
    return plan_pod(spec, image="digitnet:test", image_user=image_user, folder=tmp_path, objects=[CONFIG_MAP, SECRET] if objects is None else objects)


def _with(container: dict[str, Any] | None = None, **pod: Any) -> dict[str, Any]:
    """POD_SPEC with some of its pod fields and its container's fields replaced."""
    return {**POD_SPEC, **pod, "containers": [{**POD_SPEC["containers"][0], **(container or {})}]}


def test_the_pod_spec_becomes_these_docker_run_options(tmp_path: Path) -> None:
    plan = _plan(POD_SPEC, tmp_path)
    options = set(plan.options)
    assert {"--user=10001:10001", "--group-add=10001", "--read-only", "--security-opt=no-new-privileges", "--cap-drop=ALL"} <= options
    assert not any(o.startswith("--security-opt=seccomp") for o in options)  # RuntimeDefault: Docker's own profile
    assert "--tmpfs=/tmp:rw,exec,nosuid,nodev,mode=2777,gid=10001,size=67108864" in options
    assert {"--cpus=1.0", "--memory=1073741824b", "--cpu-shares=256"} <= options
    assert {"--publish=127.0.0.1::50051/tcp", "--publish=127.0.0.1::8080/tcp"} <= options
    assert plan.env["DIGITNET_TOKEN"] == TOKEN and plan.env["DIGITNET_HOST"] == "0.0.0.0" and f"--env=DIGITNET_TOKEN={TOKEN}" in options
    assert plan.arguments == ["serve"] and plan.image == "digitnet:test" and plan.grace_seconds == 20
    assert plan.pre_stop == {"sleep": {"seconds": 2}} and set(plan.probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    assert plan.ports == {"50051": 50051, "grpc": 50051, "8080": 8080, "http": 8080}
    # What only a cluster acts on is handed over, not dropped.
    assert plan.cluster_only["spec.containers[0].resources.requests.memory"] == "256Mi"
    assert plan.cluster_only["spec.containers[0].imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (_with(hostNetwork=True), "spec.hostNetwork"),
        (_with({"stdin": True}), "spec.containers[0].stdin"),
        (_with({"securityContext": {"readOnlyRootFilesystem": True, "procMount": "Default"}}), "securityContext.procMount"),
        (_with({"lifecycle": {"postStart": {"exec": {"command": ["true"]}}}}), "lifecycle.postStart"),
        (_with({"readinessProbe": {"grpc": {"port": 50051}, "periodSecond": 5}}), "readinessProbe.periodSecond"),
        (_with({"resources": {"limits": {"nvidia.com/gpu": 1}}}), "resources.limits.nvidia.com/gpu"),
        (_with({"ports": [{"containerPort": 50051, "hostPort": 50051}]}), "ports[0].hostPort"),
        (_with(volumes=[{"name": "tmp", "hostPath": {"path": "/tmp"}}]), "spec.volumes[0].hostPath"),
        (_with(automountServiceAccountToken=True), "automountServiceAccountToken"),
        (_with(initContainers=[{"name": "init", "image": "busybox"}]), "spec.initContainers"),
        ({**POD_SPEC, "containers": []}, "exactly one container"),
        (_with({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}]}), "Secret 'absent' was not given"),
        (_with({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}), "status.podIP"),
        (_with({"volumeMounts": [{"name": "nowhere", "mountPath": "/x"}]}), "no volume named 'nowhere'"),
        (_with({"securityContext": {"privileged": True}}), "privileged"),
        (_with(securityContext={"runAsNonRoot": True, "runAsUser": 0}), "would run as root"),
        (_with(securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}), "seccompProfile.localhostProfile"),
    ],
)
def test_a_field_the_runner_would_not_carry_out_is_refused(tmp_path: Path, change: dict[str, Any], refused: str) -> None:
    with pytest.raises(Unsupported, match=refused.replace(".", r"\.").replace("[", r"\[")):
        _plan(change, tmp_path)


def test_run_as_non_root_needs_a_numeric_user_as_the_kubelet_does(tmp_path: Path) -> None:
    # Without runAsUser the kubelet checks the image's USER, and cannot check a name: the image's USER is numeric.
    spec = _with(securityContext={"runAsNonRoot": True})
    with pytest.raises(Unsupported, match="not numeric"):
        _plan(spec, tmp_path / "a", image_user="digitnet")
    assert not any(o.startswith("--user") for o in _plan(spec, tmp_path / "b", image_user="10001:10001").options)


def test_env_resolves_as_the_kubelet_resolves_it(tmp_path: Path) -> None:
    config = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"A": "from-map", "B": "b"}}
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"key": "s3cret"}, "data": {"raw": base64.b64encode(b"bytes").decode()}}
    container = {
        "envFrom": [
            {"configMapRef": {"name": "c"}},
            {"secretRef": {"name": "s"}, "prefix": "S_"},
            {"configMapRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "A", "value": "mine"},  # env wins over envFrom
            {"name": "JOINED", "value": "$(A)-$(B)-$(LATER)-$$(A)"},  # only variables defined before; $$ is a literal $
            {"name": "LATER", "value": "x"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "missing", "optional": True}}},
        ],
        "command": ["digitnet", "--log-level=$(LATER)"],
        "args": ["serve", "$(A)"],
    }
    plan = _plan(_with(container), tmp_path, objects=[config, secret])
    assert {k: v for k, v in plan.env.items() if k in ("A", "B", "S_key", "S_raw", "JOINED", "POD", "GONE")} == {
        "A": "mine",
        "B": "b",
        "S_key": "s3cret",
        "S_raw": "bytes",
        "JOINED": "mine-b-$(LATER)-$(A)",
        "POD": "digitnet",
    }
    assert "--entrypoint=digitnet" in plan.options and plan.arguments == ["--log-level=x", "serve", "mine"]


def test_secret_config_map_and_claim_volumes_are_files_bound_as_the_kubelet_mounts_them(tmp_path: Path) -> None:
    secret = {"kind": "Secret", "metadata": {"name": "tls"}, "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}
    config = {"kind": "ConfigMap", "metadata": {"name": "models"}, "data": {"note.txt": "hello"}}
    (tmp_path / "claim").mkdir()
    (tmp_path / "claim" / "default.onnx").write_bytes(b"onnx")
    volumes = [
        {"name": "tls", "secret": {"secretName": "tls", "defaultMode": 0o400, "items": [{"key": "tls.key", "path": "private/key.pem"}]}},
        {"name": "notes", "configMap": {"name": "models"}},
        {"name": "models", "persistentVolumeClaim": {"claimName": "digitnet-models", "readOnly": True}},
        {"name": "tmp", "emptyDir": {"medium": "Memory"}},
    ]
    mounts = [
        {"name": "tls", "mountPath": "/etc/digitnet/tls"},
        {"name": "notes", "mountPath": "/etc/note.txt", "subPath": "note.txt"},
        {"name": "models", "mountPath": "/app/models"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    plan = plan_pod(
        _with({"volumeMounts": mounts}, volumes=volumes),
        image="digitnet:test",
        image_user="10001:10001",
        folder=tmp_path / "pod",
        objects=[CONFIG_MAP, SECRET, secret, config],
        claims={"digitnet-models": tmp_path / "claim"},
    )
    key = tmp_path / "pod" / "volumes" / "tls" / "private" / "key.pem"
    assert key.read_text() == "KEY" and oct(key.stat().st_mode & 0o777) == "0o440" and key.stat().st_gid == 10001  # fsGroup can read it
    assert not (tmp_path / "pod" / "volumes" / "tls" / "tls.crt").exists()  # only the items named
    bound = [o for o in plan.options if o.startswith(("--mount", "--tmpfs"))]
    assert bound == [
        f"--mount=type=bind,source={tmp_path / 'pod' / 'volumes' / 'tls'},target=/etc/digitnet/tls,readonly",
        f"--mount=type=bind,source={tmp_path / 'pod' / 'volumes' / 'notes' / 'note.txt'},target=/etc/note.txt,readonly",
        f"--mount=type=bind,source={tmp_path / 'claim'},target=/app/models,readonly",
        "--tmpfs=/tmp:rw,exec,nosuid,nodev,mode=2777,gid=10001",
    ]
    assert (tmp_path / "claim").stat().st_gid == 10001 and (tmp_path / "claim" / "default.onnx").stat().st_mode & 0o060 == 0o060


def test_a_deployment_s_pod_spec_is_its_template_s() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": POD_SPEC}}}
    assert pod_template_spec(deployment) is POD_SPEC and pod_template_spec({"kind": "Pod", "spec": POD_SPEC}) is POD_SPEC


@pytest.mark.slow
def test_the_pod_spec_runs_as_kubernetes_would_run_it(docker: Docker, server_image: str, tmp_path: Path) -> None:
    spec, objects = deployment_pod()
    with run_pod(docker, spec, image=server_image, folder=tmp_path, objects=objects) as pod:
        # Ready through the check the probe names: grpc.health.v1 Check, its service, on its port.
        pod.wait_until("startupProbe", timeout=pod.budget("startupProbe"))  # else the kubelet would restart it
        assert pod.probe("readinessProbe") and pod.probe("livenessProbe")

        # The user, the read-only root, the capabilities, no-new-privileges and seccomp, as the kernel sees them.
        assert pod.exec("id", "-u").stdout.strip() == "10001" and pod.exec("id", "-g").stdout.strip() == "10001"
        status = dict(line.split(":\t", 1) for line in pod.exec("cat", "/proc/1/status").stdout.splitlines() if ":\t" in line)
        assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4  # the server itself, PID 1
        assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"  # 2: a seccomp filter (the runtime's default)
        refused = pod.exec("sh", "-c", "touch /app/x")
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        assert pod.exec("sh", "-c", "touch /tmp/x && rm /tmp/x").returncode == 0  # the emptyDir

        # From the host, with the Secret's token: the HTTP front door classifies a scanned 7; without it, 401.
        token = pod.plan.env.get("DIGITNET_TOKEN")
        url = f"http://127.0.0.1:{pod.host_port('http')}/v1/classify"
        image = (GOLDEN / "7_scan.jpg").read_bytes()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(url, image, headers), timeout=30) as answer:
            assert json.loads(answer.read())["label"] == 7
        if token:
            with pytest.raises(urllib.error.HTTPError) as unauthenticated:
                urllib.request.urlopen(urllib.request.Request(url, image), timeout=30)
            assert unauthenticated.value.code == 401

        # Deleted as the kubelet deletes a pod: preStop, SIGTERM, SIGKILL only when the grace period is up.
        took = pod.terminate()
        state, logs = pod.state(), pod.logs()
        assert state["ExitCode"] == 0 and not state["OOMKilled"], logs[-3000:]
        assert took < pod.plan.grace_seconds, f"{took:.1f} s: not drained within the grace period"
        records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        messages = [record["message"] for record in records]
        assert any(m.startswith("draining") for m in messages) and messages[-1] == "stopped", messages[-5:]
        assert not [r for r in records if r["level"] not in ("DEBUG", "INFO")], records  # nothing failed to write, say
