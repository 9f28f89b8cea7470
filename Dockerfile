# CPU inference image: the FastAPI service on ONNX Runtime / OpenVINO (`backend: auto` picks OpenVINO here).
#
#   docker build -t yolo-detector:cpu .
#   docker run --rm -p 8000:8000 -v "$PWD/models:/app/models:ro" yolo-detector:cpu
#
# The model is not baked in: models/model.onnx (the versioned DVC artifact) is mounted at /app/models, so a new
# model is a container restart, not an image rebuild. Both stages use an allowed base image (python:3.x).
# The environment is the project's uv.lock with exactly the extras the tests exercise (serve + openvino):
# tests/unit/repository/test_dockerfiles.py checks this file against pyproject.toml and uv.lock.

# --- build: resolve nothing, install the locked environment into /opt/venv ------------------------------------------
FROM python:3.11-slim-bookworm AS build

# uv is pinned; it is only needed in this stage.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /src
# Dependencies first (this layer is cached until uv.lock or pyproject.toml change), the project itself second.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra serve --extra openvino --no-install-project --python /usr/local/bin/python3.11
COPY detector ./detector
COPY export ./export
COPY api ./api
COPY cli ./cli
RUN uv sync --frozen --no-dev --extra serve --extra openvino --no-editable --python /usr/local/bin/python3.11

# --- runtime: the venv, the configs, a non-root user -----------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="yolo-detector (CPU)" \
      org.opencontainers.image.description="YOLO object detection API: FastAPI + ONNX Runtime / OpenVINO" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY configs ./configs
RUN mkdir -p /app/models && chown app:app /app/models

# OPENCV_IO_MAX_IMAGE_PIXELS: OpenCV refuses to decode images above this many pixels (its default is 2^30), a
# second line of defence behind the API's own limit (inference.server.max_pixels, same value).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENCV_IO_MAX_IMAGE_PIXELS=40000000 \
    DETECTOR_INFERENCE__MODEL_PATH=models/model.onnx \
    DETECTOR_INFERENCE__BACKEND=auto \
    DETECTOR_INFERENCE__SERVER__HOST=0.0.0.0 \
    DETECTOR_INFERENCE__SERVER__PORT=8000

USER 10001:10001
EXPOSE 8000

# /health answers 200 only once the model is loaded and warmed up (503 before): urllib raises on 503, exit 1.
# python instead of curl: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('DETECTOR_INFERENCE__SERVER__PORT', '8000'), timeout=4)"]

ENTRYPOINT ["detector"]
CMD ["serve"]
