"""deploy/kserve/: the InferenceServices, checked as far as can be without a cluster, and the custom predictor run.

Validated: each file against KServe's own InferenceService schema (a trimmed copy of its v0.20.0 CRD,
tests/kserve/, with unknown fields refused as strict field validation refuses them); the predictor's container, put
in a Pod, against the Kubernetes API's schema (kubernetes-validate); what KServe expects of a custom predictor
(the container's name, one port, the protocol) and what Knative's validation refuses (read from their sources:
knative/serving pkg/apis/serving/k8s_validation.go and fieldmask.go); that the ONNX service's Triton can load our file.
Run: the custom predictor's containers, in the Docker daemon as KServe would run them in a pod (tests/kube_pod.py),
ready through their probes and answering an Open Inference Protocol inference. Not run: KServe's controller,
Knative, the ingress, Triton.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import numpy as np
import onnx
import pytest
import yaml
from PIL import Image

from .conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL
from .docker_daemon import Docker
from .kube_pod import Obj, run_pod
from .test_kubernetes_pod import POD_SPEC

REPO = Path(__file__).resolve().parents[1]
KSERVE = REPO / "deploy" / "kserve"
SERVICES = {path.name: yaml.safe_load(path.read_text()) for path in sorted(KSERVE.glob("*.yaml"))}
CUSTOM = ("inferenceservice.yaml", "inferenceservice-grpc.yaml")
#: The Kubernetes version the containers are validated against (kubernetes-validate bundles its schemas).
KUBERNETES_VERSION = "1.31.0"
#: KServe's own predictor fields (ComponentExtensionSpec and the model): the rest of a predictor is a PodSpec.
KSERVE_FIELDS = frozenset(
    "minReplicas maxReplicas scaleTarget scaleMetric scaleMetricType autoScaling containerConcurrency timeout canaryTrafficPercent".split()
    + "logger batcher labels annotations deploymentStrategy storageUris storageContainerName model".split()
)
#: Knative Serving refuses these in the user container: knative/serving pkg/apis/serving/k8s_validation.go
#: (reservedPorts: queue-proxy's 8012, 8013, 8022, 9090, 9091 and profiling's 8008; reservedEnvVars; validPortNames).
KNATIVE_RESERVED_PORTS = frozenset({8008, 8012, 8013, 8022, 9090, 9091})
KNATIVE_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
KNATIVE_PORT_NAMES = frozenset({"", "http1", "h2c"})
#: The onnxruntime in a Triton release (triton-inference-server/server build.py, TRITON_VERSION_MAP at the
#: release's tag), and the newest ONNX IR version and opset that onnxruntime loads (its compatibility table; 1.15.0
#: refuses our file with "Unsupported model IR version: 10, max supported IR version: 9", 1.18.0 answers every
#: golden digit: tried here).
TRITON_ONNXRUNTIME = {"23.05-py3": "1.15.0", "24.05-py3": "1.18.0"}
ONNXRUNTIME_SUPPORTS = {"1.15.0": (9, 19), "1.18.0": (10, 21)}
#: KServe's kserve-tritonserver runtime's default image tag (kserve v0.20.0: config/runtimes/kustomization.yaml,
#: charts/kserve-runtime-configs/values.yaml).
KSERVE_DEFAULT_TRITON = "23.05-py3"


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused where the API server's strict field validation refuses them."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


SCHEMA = _strict(json.loads((REPO / "tests" / "kserve" / "inferenceservice-v1beta1.schema.json").read_text()))


def _schema_errors(service: Obj) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(service)]


def _predictor(name: str) -> dict[str, Any]:
    predictor: dict[str, Any] = SERVICES[name]["spec"]["predictor"]
    return predictor


def _pod_of(name: str) -> dict[str, Any]:
    """The pod spec KServe makes of a custom predictor: its PodSpec fields, less KServe's own."""
    return {key: value for key, value in _predictor(name).items() if key not in KSERVE_FIELDS}


def _knative_refusals(pod: Obj) -> list[str]:
    """What Knative Serving's validation of a revision (the defaults of its config-features) refuses in a pod spec."""
    problems = [f"spec.{key} is not allowed" for key in ("securityContext", "terminationGracePeriodSeconds", "initContainers") if key in pod]
    if pod.get("automountServiceAccountToken", False) is not False:
        problems.append("automountServiceAccountToken may only be false")
    container = pod["containers"][0]
    ports = container.get("ports", [])
    if len(ports) > 1:
        problems.append("More than one container port is set")
    for port in ports[:1]:
        if port.get("name", "") not in KNATIVE_PORT_NAMES:
            problems.append(f"port name {port['name']} is not allowed")
        if port["containerPort"] in KNATIVE_RESERVED_PORTS:
            problems.append(f"{port['containerPort']} is a reserved port")
    if "lifecycle" in container:
        problems.append("lifecycle is not allowed")
    problems += [f"{e['name']} is a reserved environment variable" for e in container.get("env", []) if e["name"] in KNATIVE_RESERVED_ENV]
    user_port = ports[0]["containerPort"] if ports else 8080
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        for handler in ("httpGet", "tcpSocket", "grpc"):
            port = container.get(probe, {}).get(handler, {}).get("port")
            if port is not None and port != user_port:
                problems.append(f"{probe} asks port {port}, not the container's {user_port}")
    problems += [
        f"volume {v['name']}: only emptyDir, secret, configMap, projected"
        for v in pod.get("volumes", [])
        if not {"emptyDir", "secret", "configMap", "projected"} & set(v)
    ]
    return problems


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_inference_service_is_valid_under_kserve_s_own_schema(name: str) -> None:
    service = SERVICES[name]
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert _schema_errors(service) == []


def test_the_schema_refuses_what_kserve_would() -> None:
    # The trimmed, strict schema has teeth: a misspelled field, a wrong type, a missing predictor.
    wrong = copy.deepcopy(SERVICES["inferenceservice.yaml"])
    wrong["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    wrong["spec"]["predictor"]["minReplicas"] = "one"
    assert len(_schema_errors(wrong)) == 2
    assert _schema_errors({**wrong, "spec": {}}) == ["spec: 'predictor' is a required property"]


@pytest.mark.parametrize("name", CUSTOM)
def test_the_custom_predictor_is_what_kserve_and_knative_take(name: str) -> None:
    predictor, pod = _predictor(name), _pod_of(name)
    assert set(predictor) - set(pod) == {"minReplicas"}  # KServe's own fields: the rest is the pod KServe makes
    (container,) = pod["containers"]
    assert container["name"] == "kserve-container"  # KServe finds the predictor's container by this name
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROTOCOL"] == "v2"  # a custom predictor's protocolVersion; KServe takes v1 or v2 only
    (port,) = container["ports"]  # one port: what KServe routes to, and all Knative allows
    assert _knative_refusals(pod) == []
    if name == "inferenceservice.yaml":  # REST, the Open Inference Protocol's health routes as the probes
        assert (port["name"], port["containerPort"], env["DIGITNET_HTTP_PORT"]) == ("http1", 8080, "8080")
        assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    else:  # gRPC: h2c, the standard health service as the probes
        assert (port["name"], port["containerPort"], env["DIGITNET_PORT"], env["DIGITNET_HTTP_PORT"]) == ("h2c", 50051, "50051", "0")
        assert container["readinessProbe"]["grpc"] == container["livenessProbe"]["grpc"] == {"port": 50051}
    # The pod spec's security settings, at the container (Knative refuses the pod's): the same, less fsGroup.
    expected = {**POD_SPEC["securityContext"], **POD_SPEC["containers"][0]["securityContext"]}
    del expected["fsGroup"]
    assert container["securityContext"] == expected
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}] and pod["volumes"][0]["emptyDir"]


def test_knative_s_rules_as_checked_here_refuse_what_knative_refuses() -> None:
    pod = _pod_of("inferenceservice.yaml")
    container = pod["containers"][0]
    two_ports = {**container, "ports": [*container["ports"], {"name": "h2c", "containerPort": 50051}]}
    assert _knative_refusals({**pod, "containers": [two_ports]}) == ["More than one container port is set"]
    assert _knative_refusals({**pod, "securityContext": {"fsGroup": 10001}}) == ["spec.securityContext is not allowed"]
    grpc_port = {**container, "ports": [{"name": "grpc", "containerPort": 9090}], "readinessProbe": {"grpc": {"port": 9090}}, "livenessProbe": {}}
    assert _knative_refusals({**pod, "containers": [grpc_port]}) == ["port name grpc is not allowed", "9090 is a reserved port"]


@pytest.mark.parametrize("name", CUSTOM)
def test_the_predictor_s_pod_is_valid_kubernetes(name: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "digitnet"}, "spec": _pod_of(name)}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):  # strict: a misspelled field is refused
        misspelled = {**pod["spec"]["containers"][0], "imagePullPolicyy": "Always"}
        kubernetes_validate.validate({**pod, "spec": {**pod["spec"], "containers": [misspelled]}}, KUBERNETES_VERSION, strict=True)


def test_the_onnx_predictor_s_container_fields_are_valid_kubernetes() -> None:
    model = _predictor("inferenceservice-onnx.yaml")["model"]  # KServe merges them into its runtime's container
    triton = {"name": "kserve-container", "image": f"nvcr.io/nvidia/tritonserver:{model['runtimeVersion']}", "resources": model["resources"]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "digitnet-onnx"}, "spec": {"containers": [triton]}}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_the_onnx_service_runs_our_file_on_a_triton_that_loads_it() -> None:
    model = _predictor("inferenceservice-onnx.yaml")["model"]
    assert (model["modelFormat"]["name"], model["protocolVersion"], model["runtime"]) == ("onnx", "v2", "kserve-tritonserver")
    assert model["storageUri"].startswith(("s3://", "gs://", "pvc://", "https://"))  # a placeholder the operator replaces
    newest = ONNXRUNTIME_SUPPORTS[TRITON_ONNXRUNTIME[model["runtimeVersion"]]]
    kserve_default = ONNXRUNTIME_SUPPORTS[TRITON_ONNXRUNTIME[KSERVE_DEFAULT_TRITON]]
    for path in (DEFAULT_MODEL, LOGISTIC_MODEL):
        graph = onnx.load(path)
        needs = (graph.ir_version, max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")))
        assert needs <= newest, f"{path.name} needs IR {needs[0]} and opset {needs[1]}: Triton {model['runtimeVersion']} cannot load it"
        assert not needs <= kserve_default  # why runtimeVersion is set: KServe's default Triton cannot load our files
    # The repository layout the comment gives is the one docs/model.md gives, and that Triton's model name serves.
    text = (KSERVE / "inferenceservice-onnx.yaml").read_text()
    assert "digitnet/1/model.onnx" in text and "digitnet/config.pbtxt" in text and "/v2/models/digitnet/infer" in text
    assert "REPOSITORY/digitnet/1/model.onnx" in (REPO / "docs" / "model.md").read_text()
    assert re.search(r'^name: "digitnet"$', (REPO / "docs" / "model.md").read_text(), re.MULTILINE)


@pytest.mark.slow
@pytest.mark.parametrize("name", CUSTOM)
def test_the_custom_predictor_runs_as_kserve_would_run_it(docker: Docker, server_image: str, tmp_path: Path, name: str) -> None:
    # The pod KServe makes of the predictor, and the variables Knative gives its user container.
    pod = _pod_of(name)
    container = pod["containers"][0]
    knative = {"PORT": str(container["ports"][0]["containerPort"]), "K_SERVICE": "digitnet-predictor", "K_CONFIGURATION": "digitnet-predictor"}
    knative["K_REVISION"] = "digitnet-predictor-00001"
    pod["containers"] = [{**container, "env": [*container["env"], *({"name": k, "value": v} for k, v in knative.items())]}]
    pixels = np.asarray(Image.open(GOLDEN / "7_mnist.png"), dtype=np.float32).reshape(1, 784) / 255
    with run_pod(docker, pod, image=server_image, folder=tmp_path, name="digitnet-predictor") as running:
        running.wait_until("readinessProbe", timeout=180)
        assert running.probe("livenessProbe")
        assert running.exec("id", "-u").stdout.strip() == "10001" and running.exec("touch", "/app/x").returncode != 0
        port = running.host_port(container["ports"][0]["containerPort"])
        if name == "inferenceservice.yaml":  # what KServe's ingress sends on: the OIP over REST
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10) as ready:
                assert ready.status == 200
            request = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": pixels.reshape(-1).tolist()}]}
            post = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/digitnet/infer", json.dumps(request).encode())
            with urllib.request.urlopen(post, timeout=30) as answer:
                outputs = {o["name"]: o["data"] for o in json.loads(answer.read())["outputs"]}
            assert outputs["label"] == [7]
        else:  # the OIP over gRPC, as tritonclient sends it
            import tritonclient.grpc as triton

            client = triton.InferenceServerClient(f"127.0.0.1:{port}")
            try:
                assert client.is_server_ready() and client.is_model_ready("digitnet")
                tensor = triton.InferInput("pixels", [1, 784], "FP32")
                tensor.set_data_from_numpy(pixels)
                assert client.infer("digitnet", [tensor]).as_numpy("label").tolist() == [7]
            finally:
                client.close()
        assert running.terminate() < running.plan.grace_seconds and running.state()["ExitCode"] == 0
