"""MLflow bookkeeping: open runs, log metrics, register exported models and move the champion alias.

Tracking defaults to a local SQLite file (`sqlite:///mlflow.db`); set `train.mlflow.tracking_uri` (or
MLFLOW_TRACKING_URI) to an MLflow server to share runs. Importing this module does not import mlflow.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detector.config import MlflowConfig
from detector.errors import DetectorError
from detector.runtime.metadata import read_onnx_metadata, sha256_file

log = logging.getLogger(__name__)

# The model-version tag holding the registered ONNX file's sha256: how a re-evaluation finds the version it made.
ONNX_SHA_TAG = "onnx_sha256"
CLASS_CONF_TAG = "class_conf"  # the model's per-class thresholds, JSON {class name: conf}

# Ultralytics metric keys -> MLflow-safe names (MLflow rejects parentheses).
_RENAMES = {
    "metrics/precision(B)": "val_precision",
    "metrics/recall(B)": "val_recall",
    "metrics/mAP50(B)": "val_mAP50",
    "metrics/mAP50-95(B)": "val_mAP50-95",
}


def mlflow_metric_name(key: str) -> str:
    if key in _RENAMES:
        return _RENAMES[key]
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", key.replace("/", "_"))


def setup(cfg: MlflowConfig) -> Any:
    """Point mlflow at the configured tracking store and experiment; return the mlflow module."""
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment)
    return mlflow


@contextlib.contextmanager
def active_run(mlflow: Any | None, run_name: str) -> Iterator[str]:
    """An MLflow run (its id; "" when tracking is off) whose status tells the truth: FINISHED when the block
    completes, FAILED when it raises (the error is kept as the `error` tag), KILLED on Ctrl-C."""
    if mlflow is None:
        yield ""
        return
    run = mlflow.start_run(run_name=run_name)
    try:
        yield run.info.run_id
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):  # never let bookkeeping hide the real error
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def _registered_version(client: Any, name: str, run_id: str, onnx_sha256: str) -> Any | None:
    """The version of `name` already registered from this run for this exact ONNX file, if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:  # the registered model does not exist yet
        return None
    for version in versions:
        if version.tags.get(ONNX_SHA_TAG) == onnx_sha256:
            return version
    return None


def _tag_class_thresholds(client: Any, model_name: str, version: str, onnx_path: Path) -> None:
    """Tag the version with the per-class thresholds in its ONNX metadata (and the rule that chose them), so the
    registry shows what the model will apply; nothing when it carries none."""
    import json

    try:
        metadata = read_onnx_metadata(onnx_path)
    except DetectorError:  # a file without this project's metadata carries no thresholds either
        return
    if not metadata.class_conf:
        return
    by_name = {metadata.names.get(c, str(c)): v for c, v in sorted(metadata.class_conf.items())}
    text = json.dumps(by_name, sort_keys=True)
    if len(text) > 5000:  # MLflow's tag value limit; the ONNX metadata still holds them all
        log.info("per-class thresholds of %d classes too long for a registry tag; see the ONNX metadata", len(by_name))
        return
    client.set_model_version_tag(model_name, version, CLASS_CONF_TAG, text)
    client.set_model_version_tag(model_name, version, f"{CLASS_CONF_TAG}_rule", metadata.class_conf_rule)


def register_champion(
    cfg: MlflowConfig, run_id: str, onnx_path: Path, metric_value: float, metadata_json: str
) -> dict[str, Any]:
    """Log the ONNX model to `run_id`, register it, and move the champion alias if it beats the holder.

    `metric_value` is the value of `cfg.champion_metric` (higher is better). Evaluating the same ONNX file of the
    same run again (an unchanged model, `dvc repro -f evaluate`) reuses the version registered the first time, found
    by its run and its `onnx_sha256` tag, instead of registering a copy.
    Returns what happened: the version, whether it was reused, the metric, the previous champion and whether the
    alias moved.
    """
    import mlflow
    import onnx
    from mlflow import MlflowClient

    setup(cfg)
    client = MlflowClient()
    onnx_sha = sha256_file(onnx_path)
    existing = _registered_version(client, cfg.registered_model, run_id, onnx_sha)
    if existing is not None:
        version = str(existing.version)
        log.info(
            "model %s v%s already holds this ONNX (sha256 %s): reusing it", cfg.registered_model, version, onnx_sha[:12]
        )
    else:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                onnx.load(str(onnx_path)),
                name="model",
                registered_model_name=cfg.registered_model,
                pip_requirements=["onnxruntime"],
                metadata={"detector": metadata_json},
            )
        version = str(info.registered_model_version)
        client.set_model_version_tag(cfg.registered_model, version, ONNX_SHA_TAG, onnx_sha)
    client.set_model_version_tag(cfg.registered_model, version, cfg.champion_metric, str(metric_value))
    _tag_class_thresholds(client, cfg.registered_model, version, onnx_path)
    previous_version, previous_value = None, None
    try:
        holder = client.get_model_version_by_alias(cfg.registered_model, cfg.champion_alias)
        previous_version = holder.version
        previous_value = float(holder.tags.get(cfg.champion_metric, "nan"))
    except mlflow.exceptions.MlflowException:
        pass  # no champion yet
    promote = previous_value is None or math.isnan(previous_value) or metric_value > previous_value
    if promote:
        client.set_registered_model_alias(cfg.registered_model, cfg.champion_alias, version)
        log.info(
            "model %s v%s is the new %s (%s=%.4f)",
            cfg.registered_model,
            version,
            cfg.champion_alias,
            cfg.champion_metric,
            metric_value,
        )
    return {
        "registered_model": cfg.registered_model,
        "version": version,
        "reused": existing is not None,
        "metric": cfg.champion_metric,
        "value": metric_value,
        "previous_champion": previous_version,
        "previous_value": previous_value,
        "promoted": promote,
    }
