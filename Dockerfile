# digitnet: the gRPC digit classifier. Multi-stage: one venv per image with the pinned versions, then a slim
# runtime with a non-root user and the committed model baked in (mount another over /app/models).
#   docker build -t digitnet .                          # the server (the last stage), also `digitnet score` for batch jobs
#   docker build --target viz -t digitnet-viz .         # plus matplotlib (the viz extra): explain, weights, report
#   docker build --target train -t digitnet-train .     # plus the training dependencies too (the train extra)
# Needs BuildKit, for the pip-ca secret's RUN --mount (the legacy builder can hand a build step a file only by
# writing it to a layer): Docker 23+ with the buildx plugin, where `docker build` uses it, or Docker 18.09-22
# (Debian 12's docker.io 20.10) with DOCKER_BUILDKIT=1. The legacy builder stops at the first RUN with
# "the --mount option requires BuildKit"; Docker 23+ without buildx cannot build this file.
# Behind a TLS-intercepting proxy, give pip the proxy's CA as a BuildKit secret (never stored in an image):
#   docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt -t digitnet .
FROM python:3.11-slim AS build
# pip in a venv of its own, outside the one the images get: a server has no use for an installer.
RUN python -m venv /opt/pip && python -m venv --without-pip /opt/venv
WORKDIR /src
COPY deploy/install-venv.sh pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY training ./training
COPY models ./models
# The otel extra (OpenTelemetry's SDK and OTLP exporters) in every image: tracing stays off until OTEL_* turns it on.
RUN --mount=type=secret,id=pip-ca,required=false sh install-venv.sh otel

# matplotlib, and the fonts and solvers it pulls in, draw the explain, weights and report pictures: a server needs none.
FROM build AS build-viz
RUN --mount=type=secret,id=pip-ca,required=false sh install-venv.sh otel,viz

FROM build-viz AS build-train
RUN --mount=type=secret,id=pip-ca,required=false sh install-venv.sh otel,viz,train

FROM python:3.11-slim AS base
RUN groupadd --gid 10001 digitnet && useradd --create-home --uid 10001 --gid 10001 digitnet
WORKDIR /app
COPY --chown=digitnet:digitnet models ./models
# Nothing is written outside /tmp, so that the images run on a read-only root filesystem with an emptyDir (or a
# tmpfs) at /tmp; matplotlib (viz and train) would otherwise write its cache to ~/.config, or fail without /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    DIGITNET_MODEL_REPOSITORY=/app/models \
    DIGITNET_HOST=0.0.0.0 \
    DIGITNET_PORT=50051 \
    DIGITNET_LOG_FORMAT=json
# Numeric, so that Kubernetes' runAsNonRoot can verify it is not root: with a name the kubelet refuses to start it.
USER 10001:10001
ENTRYPOINT ["digitnet"]

FROM base AS viz
COPY --from=build-viz /opt/venv /opt/venv
CMD ["--help"]

FROM base AS train
COPY --from=build-train /opt/venv /opt/venv
CMD ["train", "--name", "relu", "--out", "/app/models/default.onnx"]

# Last, so that a plain `docker build .` makes the server.
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
EXPOSE 50051 8080 9100
# The standard gRPC health protocol, checked by digitnet's own small probe (no extra binary).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["digitnet", "health", "--address", "localhost:50051"]
CMD ["serve"]
