# digitnet: the gRPC digit classifier. Multi-stage: build wheels with the pinned versions, then a slim
# runtime with a non-root user and the committed model baked in (mount another over /app/models).
#   docker build -t digitnet .                        # the server (the last stage), also `digitnet score` for batch jobs
#   docker build --target train -t digitnet-train .   # adds the training dependencies
# Behind a TLS-intercepting proxy, give pip the proxy's CA as a BuildKit secret (never stored in an image):
#   DOCKER_BUILDKIT=1 docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt -t digitnet .
FROM python:3.11-slim AS build
# The runtime image draws too (digitnet explain, weights, report); --build-arg EXTRAS= leaves matplotlib out.
ARG EXTRAS=viz
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY training ./training
COPY models ./models
RUN --mount=type=secret,id=pip-ca,required=false \
    python -m venv /opt/venv \
 && if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt ".${EXTRAS:+[$EXTRAS]}"

FROM build AS build-train
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt ".[train]"

FROM python:3.11-slim AS base
RUN useradd --create-home --uid 10001 digitnet
WORKDIR /app
COPY --chown=digitnet:digitnet models ./models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DIGITNET_MODEL=/app/models/default.onnx \
    DIGITNET_HOST=0.0.0.0 \
    DIGITNET_PORT=50051 \
    DIGITNET_LOG_FORMAT=json
USER digitnet
ENTRYPOINT ["digitnet"]

FROM base AS train
COPY --from=build-train /opt/venv /opt/venv
CMD ["train", "--out", "/app/models/default.onnx"]

# Last, so that a plain `docker build .` makes the server.
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
EXPOSE 50051 8080 9100
# The standard gRPC health protocol, checked by digitnet's own small probe (no extra binary).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["digitnet", "health", "--address", "localhost:50051"]
CMD ["serve"]
