# ovtrio's container image. Two stages: the first builds ovtrio's wheel from the source tree, the
# second installs that wheel (and so only the runtime dependencies of pyproject.toml's
# [project] dependencies, no test or dev extras) on a slim Python and runs it as a non-root user.
#
#   docker build -t ovtrio .
#   docker run --rm -p 9000:9000 -p 8000:8000 -v "$PWD/models:/models:ro" ovtrio \
#       --model_name resnet --model_path /models/resnet --port 9000 --rest_port 8000
#
# Ports: 9000 gRPC (--port) and 8000 REST (--rest_port), the ones OVMS's documentation uses with
# its image. Like OVMS's image, this one opens no port by itself: the ports are flags (CMD below
# gives the default command line: the demo model on both ports). Under KServe the ServingRuntime in
# deploy/kserve/ passes --rest_port=8080, KServe's container port for HTTP.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The wheel is built from exactly what the build backend needs (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# uid/gid 5000 as in OVMS's image, so volumes prepared for OVMS are readable as they are.
RUN groupadd --gid 5000 ovtrio \
    && useradd --uid 5000 --gid 5000 --create-home --home-dir /home/ovtrio --shell /usr/sbin/nologin ovtrio
COPY --from=build /dist /tmp/dist
RUN pip install --no-cache-dir /tmp/dist/*.whl \
    && rm -rf /tmp/dist
COPY deploy/docker/healthcheck.py /usr/local/lib/ovtrio/healthcheck.py
USER 5000:5000
WORKDIR /home/ovtrio
EXPOSE 9000 8000
# Ready = GET /v2/health/ready answers 200 on the REST port read from ovtrio's own command line.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/ovtrio/healthcheck.py"]
ENTRYPOINT ["ovtrio"]
CMD ["--demo", "--port", "9000", "--rest_port", "8000"]
