# MLflow tracking server for `docker compose --profile mlflow up mlflow` (SQLite backend, artifacts on a volume).
# Same MLflow version as uv.lock's train extra, so the server reads the database the training runs write.
FROM python:3.11-slim-bookworm

ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" \
    && groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid mlflow --home-dir /mlflow --shell /usr/sbin/nologin mlflow \
    && mkdir -p /mlflow/artifacts \
    && chown -R mlflow:mlflow /mlflow

WORKDIR /mlflow
USER 10001:10001
EXPOSE 5000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

# --allowed-hosts: MLflow's DNS-rebinding guard accepts localhost and private IPs by default; add your host name
# (MLFLOW_SERVER_ALLOWED_HOSTS) when exposing it further.
CMD ["mlflow", "server", "--backend-store-uri", "sqlite:////mlflow/mlflow.db", "--artifacts-destination", "/mlflow/artifacts", "--serve-artifacts", "--host", "0.0.0.0", "--port", "5000"]
