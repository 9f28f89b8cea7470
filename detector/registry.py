"""Serving from the MLflow model registry: `models:/yolo-detector@champion` -> a local ONNX file.

The alias (or version) is resolved through the configured tracking URI (`train.mlflow.tracking_uri`, the store the
training pipeline registers into), and the version's ONNX is downloaded once into
`<cache_dir>/<name>/<version>/model.onnx`: versions are immutable in MLflow, so the cache key is name + version and
a later start (or a reload) only asks the registry which version the alias points at now. mlflow is imported inside
the functions: the CLI injects `registry_resolver(...)` into the service, whose own code never imports mlflow.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from detector.errors import MissingDependencyError, ModelLoadError
from detector.runtime.model_source import ModelResolver, ResolvedModel, parse_registry_uri

log = logging.getLogger(__name__)

# An unreachable MLflow server should fail a start or a reload in seconds, not after MLflow's default retry
# schedule (minutes). Set only when the user has not chosen their own.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # the service's log, not a progress bar
}
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def registry_resolver(tracking_uri: str, cache_dir: str | Path) -> ModelResolver:
    """A resolver bound to one tracking URI and cache folder."""

    def resolve(uri: str) -> ResolvedModel:
        return resolve_registry_model(uri, tracking_uri, Path(cache_dir))

    return resolve


def resolve_registry_model(uri: str, tracking_uri: str, cache_dir: Path) -> ResolvedModel:
    ref = parse_registry_uri(uri)
    missing = _missing_local_store(tracking_uri)
    if missing:
        # Fail before MLflow is imported (seconds) or asked anything: its client creates a SQLite database (a file
        # store: its folders) on first use, so a reload naming a registry on a server that has none used to leave
        # a new mlflow.db in the server's working folder, after 5 s.
        raise ModelLoadError(
            f"cannot resolve {uri}: there is no MLflow registry here (the {missing} named by "
            "train.mlflow.tracking_uri does not exist); register a model first or point tracking_uri at your "
            "MLflow server"
        )
    try:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError as exc:
        raise MissingDependencyError(
            f"serving {uri} needs the MLflow client ({exc}); install the serve extra (`make install-serve`)"
        ) from exc
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    where = f"registry at {_redact(tracking_uri)}"
    try:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if ref.alias is not None:
            mv = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            mv = client.get_model_version(ref.name, str(ref.version))
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:  # a connection failure surfaces as an MlflowException too
            raise ModelLoadError(f"cannot reach the {where} to resolve {uri}: {_first_line(exc)}") from exc
        what = f"alias {ref.alias!r}" if ref.alias else f"version {ref.version}"
        raise ModelLoadError(
            f"cannot resolve {uri}: {what} of model {ref.name!r} not found in the {where}: {_first_line(exc)}"
        ) from exc
    except Exception as exc:  # DNS, a broken store: one message, no traceback
        raise ModelLoadError(
            f"cannot reach the {where} to resolve {uri}: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    version = str(mv.version)
    target = cache_dir / _safe(ref.name) / version / "model.onnx"
    if target.is_file():
        log.info("%s -> version %s (cached at %s)", uri, version, target)
    else:
        _download(client, mlflow, ref.name, version, tracking_uri, target, uri)
        log.info("%s -> version %s, downloaded to %s", uri, version, target)
    return ResolvedModel(uri=uri, name=ref.name, version=version, alias=ref.alias, path=target, run_id=mv.run_id)


def _download(client: Any, mlflow: Any, name: str, version: str, tracking_uri: str, target: Path, uri: str) -> None:
    """Download the version's artifacts into a staging folder and move its one .onnx file into place atomically
    (a concurrent or interrupted download never leaves a half-written cached model)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            source = client.get_model_version_download_uri(name, version)
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=str(staging), tracking_uri=tracking_uri
                )
            )
        except Exception as exc:
            raise ModelLoadError(
                f"cannot download {uri} (version {version}): {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        onnx = sorted(local.rglob("*.onnx")) if local.is_dir() else [local]
        if not onnx or onnx[0].suffix != ".onnx":
            raise ModelLoadError(f"{uri} (version {version}) holds no .onnx file; register the exported ONNX model")
        os.replace(onnx[0], target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _missing_local_store(tracking_uri: str) -> str:
    """For a local store (a SQLite URI, a file: URI or a plain folder) that does not exist: what is missing ("SQLite
    database", "file store folder"); "" for one that exists and for remote stores (http, databricks...)."""
    if tracking_uri.startswith("sqlite:"):
        path = tracking_uri.removeprefix("sqlite:").removeprefix("///")
        if tracking_uri.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        if path in ("", ":memory:"):
            return ""
        return "" if Path(path).is_file() else "SQLite database"
    if tracking_uri.startswith("file:"):
        path = tracking_uri.removeprefix("file:").removeprefix("//")
        return "" if Path(path).is_dir() else "file store folder"
    if tracking_uri.split(":", 1)[0] in ("databricks", "databricks-uc", "uc"):
        return ""
    if "://" not in tracking_uri and ":" not in tracking_uri.split("/", 1)[0]:
        return "" if Path(tracking_uri).is_dir() else "file store folder"
    return ""


def _redact(uri: str) -> str:
    """The tracking URI without any user:password@ part."""
    if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
