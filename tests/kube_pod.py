"""A Kubernetes pod spec run for real in the tests' Docker daemon, as a kubelet would run it: the same user and
groups, read-only root filesystem, capabilities, no-new-privileges, seccomp, env (values, ConfigMap and Secret
references, envFrom, $(VAR) references), ports, volumes and mounts, resource limits.

`plan_pod` translates a pod spec (a Deployment's `spec.template.spec`, `pod_template_spec`) into `docker run`
options; `run_pod` runs it and yields a `RunningPod`. Every field is either carried out, handed to the caller
because only a cluster acts on it (probes, `lifecycle.preStop`, `terminationGracePeriodSeconds`, scheduling and
service-account fields: `PodPlan`), or refused with `Unsupported` naming its path: nothing is dropped silently.
`RunningPod.probe` asks a probe as the kubelet does (gRPC health, HTTP GET, TCP, exec) and `RunningPod.terminate`
deletes the pod as the kubelet does (preStop, then SIGTERM, SIGKILL when the grace period is up).

Not emulated, because no cluster is here: the scheduler, Services and their environment variables, the service
account token (refused unless `automountServiceAccountToken: false`), restarts, and the probes' own timing.
"""

from __future__ import annotations

import base64
import math
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .docker_daemon import Docker

#: A Kubernetes object or part of one, as parsed from YAML.
Obj = Mapping[str, Any]

#: Pod fields that only a cluster acts on (scheduling, pulling, identity): handed to the caller in
#: `PodPlan.cluster_only`, for a test to check, never dropped unseen.
CLUSTER_ONLY_POD_FIELDS = frozenset(
    {
        "affinity",
        "dnsPolicy",
        "enableServiceLinks",
        "imagePullSecrets",
        "nodeSelector",
        "priorityClassName",
        "restartPolicy",
        "serviceAccountName",
        "tolerations",
        "topologySpreadConstraints",
    }
)
#: What this runner carries out (or, for the probes and lifecycle, hands to the test) of a pod and its container.
POD_FIELDS = frozenset("containers initContainers volumes securityContext terminationGracePeriodSeconds automountServiceAccountToken".split())
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
CONTAINER_FIELDS = frozenset(
    "name image imagePullPolicy command args workingDir env envFrom ports volumeMounts resources securityContext lifecycle".split()
) | frozenset(PROBES)
POD_SECURITY_FIELDS = frozenset({"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "fsGroupChangePolicy", "supplementalGroups", "seccompProfile"})
CONTAINER_SECURITY_FIELDS = frozenset(
    {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "privileged", "capabilities", "seccompProfile"}
)
PROBE_FIELDS = frozenset(
    {
        "exec",
        "grpc",
        "httpGet",
        "tcpSocket",
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
        "terminationGracePeriodSeconds",
    }
)
#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30
#: Kubernetes' default mode of Secret and ConfigMap volume files (0644).
DEFAULT_FILE_MODE = 0o644

_MEMORY_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


class Unsupported(ValueError):
    """A field of the pod spec that this runner cannot carry out, by its path: refused rather than ignored."""


@dataclass
class PodPlan:
    """A pod spec translated for `docker run`, and what in it only a cluster acts on."""

    name: str  # the pod's name, the container's hostname
    options: list[str]  # `docker run` options
    image: str  # the image run (the spec's image replaced)
    arguments: list[str]  # after the image: the command's tail and the args, $(VAR)s expanded
    container: Obj  # containers[0] as given
    env: dict[str, str]  # the container's environment as the kubelet resolves it
    ports: dict[str, int]  # containerPort by port name (and by its number as text)
    probes: dict[str, Obj]  # startupProbe, readinessProbe and livenessProbe where given
    pre_stop: Obj | None  # lifecycle.preStop: run by RunningPod.terminate before SIGTERM
    grace_seconds: int  # terminationGracePeriodSeconds (Kubernetes' 30 if absent)
    cluster_only: dict[str, Any] = field(default_factory=dict)  # path -> value of fields only a cluster acts on


def pod_template_spec(manifest: Obj) -> Obj:
    """The pod spec of a Deployment, StatefulSet, DaemonSet or Job manifest (spec.template.spec), or of a Pod (spec)."""
    if manifest.get("kind") == "Pod":
        return _mapping(manifest.get("spec"), "spec")
    return _mapping(_mapping(_mapping(manifest.get("spec"), "spec").get("template"), "spec.template").get("spec"), "spec.template.spec")


def plan_pod(
    spec: Obj,
    *,
    image: str,
    image_user: str,
    folder: Path,
    objects: Iterable[Obj] = (),
    claims: Mapping[str, Path] | None = None,
    name: str = "digitnet",
    namespace: str = "default",
) -> PodPlan:
    """Translate a pod spec into `docker run` options, writing Secret and ConfigMap volumes' files under `folder`.

    image replaces the spec's image; image_user is its USER (for runAsNonRoot, as the kubelet checks it); objects are
    the ConfigMap and Secret manifests that env, envFrom and volumes name; claims maps a PersistentVolumeClaim's name
    to the host folder that stands for its volume (an empty one under `folder` if not given; with fsGroup, its group
    and modes are changed as the kubelet changes a volume's: give a copy, never a folder of the checkout)."""
    _only(spec, "spec", POD_FIELDS | CLUSTER_ONLY_POD_FIELDS)
    cluster_only = {f"spec.{key}": spec[key] for key in sorted(CLUSTER_ONLY_POD_FIELDS & spec.keys())}
    if spec.get("initContainers"):
        raise Unsupported("spec.initContainers: init containers are not run")
    if spec.get("automountServiceAccountToken", True) is not False:
        raise Unsupported("spec.automountServiceAccountToken: a cluster would mount a service account token; set it false")
    containers = _sequence(spec.get("containers"), "spec.containers")
    if len(containers) != 1:
        raise Unsupported(f"spec.containers: exactly one container is run, not {len(containers)}")
    container = _mapping(containers[0], "spec.containers[0]")
    where = "spec.containers[0]"
    _only(container, where, CONTAINER_FIELDS)
    if "imagePullPolicy" in container:
        cluster_only[f"{where}.imagePullPolicy"] = container["imagePullPolicy"]
    cluster_only[f"{where}.image"] = container.get("image")
    store = _Objects(objects)
    env = _environment(container, where, store, name, namespace)
    options = [f"--hostname={name}", "--no-healthcheck"]  # a kubelet runs the spec's probes, never the image's HEALTHCHECK
    options += [f"--env={key}={value}" for key, value in env.items()]
    ports = _ports(container.get("ports", []), f"{where}.ports", options)
    options += _security(_mapping(spec.get("securityContext", {}), "spec.securityContext"), container, where, image_user)
    options += _resources(_mapping(container.get("resources", {}), f"{where}.resources"), f"{where}.resources", cluster_only)
    fs_group = _mapping(spec.get("securityContext", {}), "spec.securityContext").get("fsGroup")
    volumes = _volumes(spec.get("volumes", []), store, folder, dict(claims or {}), fs_group)
    options += _mounts(container.get("volumeMounts", []), f"{where}.volumeMounts", volumes)
    if "workingDir" in container:
        options.append(f"--workdir={container['workingDir']}")
    command = [_expand(str(part), env) for part in _sequence(container.get("command", []), f"{where}.command")]
    args = [_expand(str(part), env) for part in _sequence(container.get("args", []), f"{where}.args")]
    if command:  # command replaces the image's ENTRYPOINT and, as in Kubernetes, drops its CMD
        options.append(f"--entrypoint={command[0]}")
    probes = {}
    for probe in PROBES:
        if probe in container:
            probes[probe] = _only(_mapping(container[probe], f"{where}.{probe}"), f"{where}.{probe}", PROBE_FIELDS)
    lifecycle = _only(_mapping(container.get("lifecycle", {}), f"{where}.lifecycle"), f"{where}.lifecycle", {"preStop"})
    pre_stop = lifecycle.get("preStop")
    if pre_stop is not None:
        _only(_mapping(pre_stop, f"{where}.lifecycle.preStop"), f"{where}.lifecycle.preStop", {"exec", "httpGet", "sleep"})
    for handler in [*probes.values(), pre_stop or {}]:  # the kubelet reaches any port of the pod: publish those too
        for kind in ("grpc", "httpGet", "tcpSocket"):
            port = handler.get(kind, {}).get("port")
            if isinstance(port, str) and port not in ports:
                raise Unsupported(f"{where}: a probe or hook names port {port!r}, which no container port is named")
            if isinstance(port, int) and str(port) not in ports:
                options.append(f"--publish=127.0.0.1::{port}/tcp")
                ports[str(port)] = port
    grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
    return PodPlan(name, options, image, command[1:] + args, container, env, ports, probes, pre_stop, grace, cluster_only)


@dataclass
class RunningPod:
    """A pod spec running as a container of the tests' daemon."""

    docker: Docker
    container: str  # the container's name
    plan: PodPlan

    def host_port(self, port: int | str) -> int:
        """The loopback port of the host that a container port (its number or name) is published on."""
        number = self.plan.ports[str(port)]
        published = self.docker("port", self.container, f"{number}/tcp").stdout.split()
        return int(published[0].rsplit(":", 1)[1])

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command in the container, as its user (what an exec probe or `kubectl exec` does)."""
        return self.docker("exec", self.container, *command, timeout=timeout, check=False)

    def logs(self) -> str:
        """The container's output so far, stdout then stderr."""
        result = self.docker("logs", self.container, check=False)
        return result.stdout + result.stderr

    def state(self) -> dict[str, Any]:
        """The container's state, as `docker inspect` reports it (Running, ExitCode, ...)."""
        import json

        state: dict[str, Any] = json.loads(self.docker("inspect", "--format", "{{json .State}}", self.container).stdout)
        return state

    def probe(self, name: str = "readinessProbe", timeout: float = 5) -> bool:
        """Whether one probe of the spec succeeds now, asked as the kubelet asks it (from the host, on the published port)."""
        probe = self.plan.probes[name]
        if "grpc" in probe:
            return self._grpc_health(_mapping(probe["grpc"], f"{name}.grpc"), timeout)
        if "httpGet" in probe:
            get = _only(_mapping(probe["httpGet"], f"{name}.httpGet"), f"{name}.httpGet", {"path", "port", "scheme", "httpHeaders"})
            if get.get("scheme", "HTTP") != "HTTP":
                raise Unsupported(f"{name}.httpGet.scheme: only HTTP")
            headers = {str(h["name"]): str(h["value"]) for h in get.get("httpHeaders", [])}
            return self._http_get(get["port"], str(get.get("path", "/")), headers, timeout) is not None
        if "tcpSocket" in probe:
            try:
                with socket.create_connection(("127.0.0.1", self.host_port(probe["tcpSocket"]["port"])), timeout=timeout):
                    return True
            except OSError:
                return False
        if "exec" in probe:
            return self.exec(*map(str, probe["exec"]["command"]), timeout=timeout).returncode == 0
        raise Unsupported(f"{name}: no handler (grpc, httpGet, tcpSocket or exec)")

    def budget(self, name: str) -> float:
        """How long the kubelet keeps asking a probe before it gives up (on a startup or liveness probe: restarts the
        container): initialDelaySeconds + periodSeconds x failureThreshold, with Kubernetes' defaults."""
        probe = self.plan.probes[name]
        return float(probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3))

    def wait_until(self, name: str = "readinessProbe", timeout: float = 180) -> float:
        """Ask a probe until it succeeds (failing if the container exits or time runs out); the seconds it took."""
        start = time.monotonic()
        while not self.probe(name):
            state = self.state()
            assert state["Running"], f"the pod's container exited ({state['ExitCode']}) before {name} succeeded:\n{self.logs()[-3000:]}"
            assert time.monotonic() - start < timeout, f"{name} did not succeed within {timeout} s:\n{self.logs()[-3000:]}"
            time.sleep(0.5)
        return time.monotonic() - start

    def terminate(self) -> float:
        """Delete the pod as the kubelet does: run preStop, then SIGTERM (the image's stop signal), then SIGKILL once
        terminationGracePeriodSeconds, counted from the start, are up. Returns the seconds it took."""
        start = time.monotonic()
        hook = self.plan.pre_stop or {}
        if "sleep" in hook:
            time.sleep(min(float(hook["sleep"]["seconds"]), self.plan.grace_seconds))
        elif "exec" in hook:
            self.exec(*map(str, hook["exec"]["command"]), timeout=self.plan.grace_seconds)
        elif "httpGet" in hook:
            self._http_get(hook["httpGet"]["port"], str(hook["httpGet"].get("path", "/")), {}, self.plan.grace_seconds)
        left = max(0, math.ceil(self.plan.grace_seconds - (time.monotonic() - start)))
        self.docker("stop", "--time", str(left), self.container, timeout=left + 60)
        return time.monotonic() - start

    def _http_get(self, port: int | str, path: str, headers: Mapping[str, str], timeout: float) -> bytes | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.host_port(port)}{path}", headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return bytes(answer.read())  # the kubelet counts 200-399 as success; urllib raises for the rest
        except (urllib.error.URLError, OSError):
            return None

    def _grpc_health(self, probe: Obj, timeout: float) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{self.host_port(probe['port'])}") as channel:
            try:
                request = health_pb2.HealthCheckRequest(service=str(probe.get("service", "")))  # "": the server as a whole
                answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
            except grpc.RpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@contextmanager
def run_pod(
    docker: Docker,
    spec: Obj,
    *,
    image: str,
    folder: Path,
    objects: Iterable[Obj] = (),
    claims: Mapping[str, Path] | None = None,
    name: str = "digitnet",
) -> Iterator[RunningPod]:
    """Run a pod spec (its one container, `image` in place of its image) detached; removed afterwards, with its volumes."""
    image_user = docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    plan = plan_pod(spec, image=image, image_user=image_user, folder=folder, objects=objects, claims=claims, name=name)
    container = f"digitnet-test-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "--detach", f"--name={container}", *plan.options, plan.image, *plan.arguments)
        yield RunningPod(docker, container, plan)
    finally:
        docker("rm", "--force", "--volumes", container, check=False)


class _Objects:
    """The ConfigMaps and Secrets a pod may name, by kind and name, each as its keys' bytes."""

    def __init__(self, objects: Iterable[Obj]) -> None:
        self._data: dict[tuple[str, str], dict[str, bytes]] = {}
        for obj in objects:
            kind, name = obj.get("kind"), _mapping(obj.get("metadata"), "metadata").get("name")
            if kind == "ConfigMap":
                data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
                data |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
            elif kind == "Secret":
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                data |= {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
            else:
                raise Unsupported(f"{kind} {name}: only ConfigMaps and Secrets are given to a pod")
            self._data[(str(kind), str(name))] = data

    def get(self, kind: str, name: str, path: str, optional: bool) -> dict[str, bytes] | None:
        """A ConfigMap's or Secret's data; None if it is missing and optional (the kubelet refuses to start otherwise)."""
        found = self._data.get((kind, name))
        if found is None and not optional:
            raise Unsupported(f"{path}: {kind} {name!r} was not given (the pod would not start)")
        return found

    def key(self, kind: str, ref: Obj, path: str) -> str | None:
        """One key of a ConfigMap or Secret as text (configMapKeyRef, secretKeyRef); None if missing and optional."""
        _only(ref, path, {"name", "key", "optional"})
        data = self.get(kind, str(ref.get("name", "")), path, bool(ref.get("optional", False)))
        if data is None or ref["key"] not in data:
            if ref.get("optional", False):
                return None
            raise Unsupported(f"{path}: {kind} {ref.get('name')!r} has no key {ref['key']!r} (the pod would not start)")
        return data[ref["key"]].decode()


def _environment(container: Obj, where: str, store: _Objects, pod: str, namespace: str) -> dict[str, str]:
    # envFrom first, then env (which wins), each env value expanded with the variables defined before it.
    env: dict[str, str] = {}
    for i, source in enumerate(_sequence(container.get("envFrom", []), f"{where}.envFrom")):
        path = f"{where}.envFrom[{i}]"
        _only(source, path, {"configMapRef", "secretRef", "prefix"})
        for kind, ref in (("ConfigMap", source.get("configMapRef")), ("Secret", source.get("secretRef"))):
            if ref is not None:
                _only(ref, f"{path}.{'configMapRef' if kind == 'ConfigMap' else 'secretRef'}", {"name", "optional"})
                data = store.get(kind, str(ref.get("name", "")), path, bool(ref.get("optional", False))) or {}
                env |= {f"{source.get('prefix', '')}{key}": value.decode() for key, value in data.items()}
    for i, variable in enumerate(_sequence(container.get("env", []), f"{where}.env")):
        path = f"{where}.env[{i}]"
        _only(variable, path, {"name", "value", "valueFrom"})
        if "valueFrom" in variable:
            source = _only(_mapping(variable["valueFrom"], f"{path}.valueFrom"), f"{path}.valueFrom", {"configMapKeyRef", "secretKeyRef", "fieldRef"})
            if "fieldRef" in source:
                field_path = source["fieldRef"].get("fieldPath")
                known = {"metadata.name": pod, "metadata.namespace": namespace}
                if field_path not in known:
                    raise Unsupported(f"{path}.valueFrom.fieldRef: {field_path} (only metadata.name and metadata.namespace)")
                value: str | None = known[field_path]
            elif "configMapKeyRef" in source:
                value = store.key("ConfigMap", source["configMapKeyRef"], f"{path}.valueFrom.configMapKeyRef")
            else:
                value = store.key("Secret", source["secretKeyRef"], f"{path}.valueFrom.secretKeyRef")
            if value is not None:
                env[str(variable["name"])] = value
        else:
            env[str(variable["name"])] = _expand(str(variable.get("value", "")), env)
    return env


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable's value, $$ a literal $, anything else left as it is."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([^)]*)\)", replace, text)


def _ports(ports: Sequence[Obj], where: str, options: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, port in enumerate(ports):
        _only(port, f"{where}[{i}]", {"name", "containerPort", "protocol"})
        protocol = str(port.get("protocol", "TCP"))
        if protocol != "TCP":
            raise Unsupported(f"{where}[{i}].protocol: {protocol} (only TCP)")
        number = int(port["containerPort"])
        options.append(f"--publish=127.0.0.1::{number}/tcp")  # a free loopback port: the test reaches it as the kubelet would
        found[str(number)] = number
        if "name" in port:
            found[str(port["name"])] = number
    return found


def _security(pod: Obj, container: Obj, where: str, image_user: str) -> list[str]:
    _only(pod, "spec.securityContext", POD_SECURITY_FIELDS)
    own = _only(_mapping(container.get("securityContext", {}), f"{where}.securityContext"), f"{where}.securityContext", CONTAINER_SECURITY_FIELDS)
    merged = {**pod, **own}  # the container's settings win over the pod's
    options: list[str] = []
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if merged.get("runAsNonRoot"):  # the kubelet's check, before it starts the container
        user = str(uid) if uid is not None else image_user.split(":")[0]
        if not user.isdigit():
            raise Unsupported(f"{where}: runAsNonRoot, and the image's user {image_user!r} is not numeric: the kubelet cannot verify it is not root")
        if int(user) == 0:
            raise Unsupported(f"{where}: runAsNonRoot, and the container would run as root")
    if uid is not None or gid is not None:
        user = str(uid) if uid is not None else (image_user.split(":")[0] or "0")
        options.append(f"--user={user}" + (f":{gid}" if gid is not None else ""))
    for group in [*([pod["fsGroup"]] if "fsGroup" in pod else []), *pod.get("supplementalGroups", [])]:
        options.append(f"--group-add={int(group)}")
    if merged.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if merged.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    if merged.get("privileged"):
        raise Unsupported(f"{where}.securityContext.privileged: privileged containers are not run")
    capabilities = _only(_mapping(merged.get("capabilities", {}), "capabilities"), f"{where}.securityContext.capabilities", {"drop", "add"})
    options += [f"--cap-drop={cap}" for cap in capabilities.get("drop", [])]
    options += [f"--cap-add={cap}" for cap in capabilities.get("add", [])]
    # Without a seccompProfile a kubelet runs the container unconfined (unless started with --seccomp-default);
    # RuntimeDefault is the runtime's own profile, which Docker applies by default.
    seccomp = _only(_mapping(merged.get("seccompProfile", {"type": "Unconfined"}), "seccompProfile"), "seccompProfile", {"type"})
    if seccomp["type"] == "Unconfined":
        options.append("--security-opt=seccomp=unconfined")
    elif seccomp["type"] != "RuntimeDefault":
        raise Unsupported(f"{where}: seccompProfile {seccomp['type']} (only RuntimeDefault and Unconfined)")
    return options


def _resources(resources: Obj, where: str, cluster_only: dict[str, Any]) -> list[str]:
    _only(resources, where, {"limits", "requests"})
    limits = _only(_mapping(resources.get("limits", {}), f"{where}.limits"), f"{where}.limits", {"cpu", "memory"})
    requests = _only(_mapping(resources.get("requests", {}), f"{where}.requests"), f"{where}.requests", {"cpu", "memory"})
    options = []
    if "cpu" in limits:
        options.append(f"--cpus={_cpu(limits['cpu'])}")
    if "memory" in limits:
        options.append(f"--memory={_bytes(limits['memory'])}b")
    cpu_request = requests.get("cpu", limits.get("cpu"))  # a limit alone is also the request, as in Kubernetes
    if cpu_request is not None:
        options.append(f"--cpu-shares={max(2, int(_cpu(cpu_request) * 1024))}")  # the kubelet's cgroup shares
    if "memory" in requests:
        cluster_only[f"{where}.requests.memory"] = requests["memory"]  # the scheduler's business
    return options


def _cpu(quantity: object) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: object) -> int:
    match = re.fullmatch(r"([0-9.]+)([KMGTPE]i|[kMGTPE])?", str(quantity))
    if not match:
        raise Unsupported(f"memory quantity {quantity!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS.get(match.group(2) or "", 1))


@dataclass
class _Volume:
    kind: str  # emptyDir, secret, configMap, persistentVolumeClaim
    source: Path | None  # the host folder bound (None for an emptyDir)
    read_only: bool
    tmpfs_options: str = ""
    mounted: bool = False


def _volumes(volumes: Sequence[Obj], store: _Objects, folder: Path, claims: dict[str, Path], fs_group: int | None) -> dict[str, _Volume]:
    found: dict[str, _Volume] = {}
    for i, volume in enumerate(volumes):
        where = f"spec.volumes[{i}]"
        _only(volume, where, {"name", "emptyDir", "secret", "configMap", "persistentVolumeClaim"})
        name = str(volume["name"])
        kinds = [kind for kind in ("emptyDir", "secret", "configMap", "persistentVolumeClaim") if kind in volume]
        if len(kinds) != 1:
            raise Unsupported(f"{where}: one volume source of emptyDir, secret, configMap, persistentVolumeClaim, not {kinds}")
        kind, source = kinds[0], _mapping(volume[kinds[0]], f"{where}.{kinds[0]}")
        if kind == "emptyDir":
            _only(source, f"{where}.emptyDir", {"medium", "sizeLimit"})
            if source.get("medium", "") not in ("", "Memory"):
                raise Unsupported(f"{where}.emptyDir.medium: {source['medium']}")
            # A tmpfs either way: empty at start, gone with the pod, writable by any user (0777, as the kubelet
            # makes an emptyDir; group fsGroup, setgid, as it sets a volume's ownership); exec, as a disk emptyDir is.
            options = "rw,exec,nosuid,nodev," + (f"mode=2777,gid={fs_group}" if fs_group is not None else "mode=0777")
            if "sizeLimit" in source:
                options += f",size={_bytes(source['sizeLimit'])}"
            found[name] = _Volume(kind, None, False, options)
        elif kind in ("secret", "configMap"):
            object_kind = "Secret" if kind == "secret" else "ConfigMap"
            object_name = str(source.get("secretName" if kind == "secret" else "name", ""))
            _only(source, f"{where}.{kind}", {"secretName" if kind == "secret" else "name", "items", "defaultMode", "optional"})
            data = store.get(object_kind, object_name, f"{where}.{kind}", bool(source.get("optional", False))) or {}
            target = folder / "volumes" / name
            target.mkdir(parents=True)
            default_mode = int(source.get("defaultMode", DEFAULT_FILE_MODE))
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            for j, item in enumerate(items):
                _only(item, f"{where}.{kind}.items[{j}]", {"key", "path", "mode"})
                if item["key"] not in data:
                    raise Unsupported(f"{where}.{kind}.items[{j}]: {object_kind} {object_name!r} has no key {item['key']!r}")
                _write_volume_file(target / str(item["path"]), data[item["key"]], int(item.get("mode", default_mode)), fs_group)
            _own_folder(target, fs_group, 0o555)
            found[name] = _Volume(kind, target, True)  # the kubelet mounts these read-only, always
        else:
            _only(source, f"{where}.persistentVolumeClaim", {"claimName", "readOnly"})
            claim = str(source["claimName"])
            target = claims.get(claim) or folder / "claims" / claim
            target.mkdir(parents=True, exist_ok=True)
            if fs_group is not None:  # the kubelet makes the volume group-owned by fsGroup, group-writable, setgid
                for path in [target, *target.rglob("*")]:
                    os.chown(path, -1, fs_group)
                    path.chmod(path.stat().st_mode | (0o2070 if path.is_dir() else 0o060))
            found[name] = _Volume(kind, target, bool(source.get("readOnly", False)))
    return found


def _write_volume_file(path: Path, data: bytes, mode: int, fs_group: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if fs_group is not None:  # group fsGroup, group-readable: what the kubelet does to a read-only volume's files
        os.chown(path, -1, fs_group)
        mode |= 0o440
    path.chmod(mode)


def _own_folder(folder: Path, fs_group: int | None, mode: int) -> None:
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        path.chmod(mode)
        if fs_group is not None:
            os.chown(path, -1, fs_group)


def _mounts(mounts: Sequence[Obj], where: str, volumes: dict[str, _Volume]) -> list[str]:
    options = []
    for i, mount in enumerate(mounts):
        path = f"{where}[{i}]"
        _only(mount, path, {"name", "mountPath", "readOnly", "subPath"})
        volume = volumes.get(str(mount["name"]))
        if volume is None:
            raise Unsupported(f"{path}: no volume named {mount['name']!r}")
        target = str(mount["mountPath"])
        if volume.source is None:
            if volume.mounted or mount.get("subPath"):
                raise Unsupported(f"{path}: an emptyDir is mounted once, whole")
            volume.mounted = True
            options.append(f"--tmpfs={target}:{volume.tmpfs_options}")
            continue
        source = volume.source / str(mount.get("subPath", ""))
        if not source.exists():
            raise Unsupported(f"{path}.subPath: {mount['subPath']!r} is not in volume {mount['name']!r}")
        read_only = volume.read_only or bool(mount.get("readOnly", False))
        options.append(f"--mount=type=bind,source={source},target={target}" + (",readonly" if read_only else ""))
    return options


def _only(obj: Obj, path: str, allowed: Iterable[str]) -> Obj:
    """obj itself, once no key of it is outside `allowed` (else Unsupported, naming the first such key)."""
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise Unsupported(f"{path}.{unknown[0]}: not carried out by this runner")
    return obj


def _mapping(value: object, path: str) -> Obj:
    if not isinstance(value, Mapping):
        raise Unsupported(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _sequence(value: object, path: str) -> Sequence[Any]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise Unsupported(f"{path}: expected a list, got {type(value).__name__}")
    return value
