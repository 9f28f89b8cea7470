"""MLflow bookkeeping: open runs, log metrics, register exported models and move the champion alias.

Tracking defaults to a local SQLite file (`sqlite:///mlflow.db`); set `train.mlflow.tracking_uri` (or
MLFLOW_TRACKING_URI) to an MLflow server to share runs. Importing this module does not import mlflow.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from detector.config import MlflowConfig

log = logging.getLogger(__name__)

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


def register_champion(
    cfg: MlflowConfig, run_id: str, onnx_path: Path, metric_value: float, metadata_json: str
) -> dict[str, Any]:
    """Log the ONNX model to `run_id`, register it, and move the champion alias if it beats the holder.

    Returns what happened: the new version, the metric, the previous champion and whether the alias moved.
    """
    import mlflow
    import onnx
    from mlflow import MlflowClient

    setup(cfg)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="model",
            registered_model_name=cfg.registered_model,
            pip_requirements=["onnxruntime"],
            metadata={"detector": metadata_json},
        )
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.set_model_version_tag(cfg.registered_model, version, cfg.champion_metric, str(metric_value))
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
        "metric": cfg.champion_metric,
        "value": metric_value,
        "previous_champion": previous_version,
        "previous_value": previous_value,
        "promoted": promote,
    }
