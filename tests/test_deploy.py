"""The deployment files read as text: what a plain build makes, and what compose and the Dockerfile must
agree on. tests/test_docker.py runs them for real in a Docker daemon."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (REPO / "Dockerfile").read_text()
INSTALL_VENV = (REPO / "deploy" / "install-venv.sh").read_text()


def _stages() -> dict[str, str]:
    """The Dockerfile's stages by name, in order."""
    parts = re.split(r"^FROM \S+ AS (\S+)\n", DOCKERFILE, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_a_plain_build_makes_the_server() -> None:
    # `docker build -t digitnet .` built the train stage, so `docker run digitnet` trained instead of serving.
    stages = _stages()
    last = list(stages)[-1]
    assert last == "runtime" and 'CMD ["serve"]' in stages[last] and "HEALTHCHECK" in stages[last]
    assert re.search(r"^FROM base AS runtime$", DOCKERFILE, re.MULTILINE) and re.search(r"^FROM base AS train$", DOCKERFILE, re.MULTILINE)
    assert "USER 10001:10001" in stages["base"] and "DIGITNET_HOST=0.0.0.0" in stages["base"] and 'ENTRYPOINT ["digitnet"]' in stages["base"]


def test_compose_and_dockerfile_agree() -> None:
    services = COMPOSE["services"]
    assert {"server", "batch", "train", "prometheus"} <= services.keys()
    server = services["server"]
    assert server["restart"] == "unless-stopped" and server["deploy"]["resources"]["limits"]
    assert server["build"]["target"] == "runtime" and services["train"]["build"]["target"] == "train"
    healthcheck = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])", DOCKERFILE, re.DOTALL).group(1)  # type: ignore[union-attr]
    assert json.loads(healthcheck) == server["healthcheck"]["test"][1:], "Dockerfile and compose disagree on the probe"
    assert services["batch"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["batch"]["profiles"] == ["batch"] and services["train"]["profiles"] == ["train"]


def test_jobs_that_write_host_folders_run_as_a_uid_the_operator_chooses() -> None:
    # The batch job could not write data/out, nor the train job models/, until the host folder was chowned to 10001.
    for job in ("batch", "train"):
        assert COMPOSE["services"][job]["user"] == "${DIGITNET_UID:-10001}:${DIGITNET_GID:-10001}"


def test_pip_trusts_a_proxys_ca_only_through_a_build_secret() -> None:
    # Behind a TLS-intercepting proxy pip needs its CA; it must never end up in an image layer.
    installs = [line for line in DOCKERFILE.splitlines() if "install-venv.sh" in line and line.startswith("RUN")]
    assert len(installs) == 3 and all(line.startswith("RUN --mount=type=secret,id=pip-ca,required=false ") for line in installs)
    # Build arguments are kept in the image's history.
    assert not [line for line in DOCKERFILE.splitlines() if line.startswith("ARG")]
    assert "PIP_CERT=/run/secrets/pip-ca" in INSTALL_VENV


def test_the_server_image_gets_neither_matplotlib_nor_the_training_stack() -> None:
    # matplotlib and its fonts were a seventh of the server's venv; `explain` in the server image names the viz image.
    # Tracing's SDK (the otel extra) is in every image: the OTEL_* variables alone turn it on in a container.
    stages = _stages()
    assert "COPY --from=build /opt/venv /opt/venv" in stages["runtime"]
    assert "install-venv.sh otel\n" in stages["build"] and "install-venv.sh otel,viz\n" in stages["build-viz"]
    assert "install-venv.sh otel,viz,train\n" in stages["build-train"]
    assert "COPY --from=build-viz /opt/venv /opt/venv" in stages["viz"]
    assert "COPY --from=build-train /opt/venv /opt/venv" in stages["train"]


def test_the_train_job_leaves_the_committed_models_alone() -> None:
    # It trained into ./models, over the committed default.onnx that the server serves.
    services = COMPOSE["services"]
    assert services["train"]["volumes"] == ["./data/models:/app/models"]
    assert services["server"]["volumes"] == ["${DIGITNET_MODELS:-./models}:/app/models:ro"]


def test_the_batch_job_refuses_a_missing_or_empty_input_folder() -> None:
    # Without ./data/in, Docker made an empty folder and the job wrote a header-only CSV, exit 0.
    entrypoint = COMPOSE["services"]["batch"]["entrypoint"]
    assert entrypoint[:2] == ["sh", "-c"] and "ls -A /data/in" in entrypoint[2] and "exit 2" in entrypoint[2]
    assert entrypoint[2].endswith('exec digitnet "$$@"')


def test_every_setting_compose_reads_is_named_in_its_header() -> None:
    header = COMPOSE_TEXT[: COMPOSE_TEXT.index("services:")]
    used = set(re.findall(r"\$\{(DIGITNET_\w+)", COMPOSE_TEXT[len(header) :]))
    assert used and {name for name in used if name not in header} == set()


def test_every_python_package_is_installed_by_a_plain_install() -> None:
    # The packages are listed by hand (pyproject.toml): a new folder missing there works in the editable
    # checkout and fails only in the images, where digitnet is installed for real.
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    portions = {"digitnet.service": REPO / "service" / "digitnet" / "service", "digitnet.training": REPO / "training" / "digitnet" / "training"}
    for package, root in portions.items():
        for init in root.rglob("__init__.py"):
            name = ".".join([package, *init.parent.relative_to(root).parts])
            assert name in listed, f"{name} is not in pyproject.toml's [tool.setuptools] packages: a plain install would leave it out"
