"""MLflow bookkeeping: open runs, log metrics, register exported models and move the champion alias.

Tracking defaults to a local SQLite file (`sqlite:///mlflow.db`); set `train.mlflow.tracking_uri` (or
MLFLOW_TRACKING_URI) to an MLflow server to share runs. Importing this module does not import mlflow.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from detector.config import MlflowConfig
from detector.errors import DetectorError
from detector.runtime.metadata import read_onnx_metadata, sha256_file

log = logging.getLogger(__name__)

# The model-version tag holding the registered ONNX file's sha256: how a re-evaluation finds the version it made.
ONNX_SHA_TAG = "onnx_sha256"
CLASS_CONF_TAG = "class_conf"  # the model's per-class thresholds, JSON {class name: conf}
# Set on a version (and its run) the promotion gate refused: why, naming class and backend.
REFUSED_TAG = "gate.refused"

# The promotion gate, injected by the composition root (training and evaluation are separate layers): given the
# champion's version tags (None when nobody holds the alias) and a label for it, the reasons to refuse ([]: pass).
PromotionGate = Callable[[dict[str, str] | None, str], list[str]]

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
    cfg: MlflowConfig,
    run_id: str,
    onnx_path: Path,
    metric_value: float,
    metadata_json: str,
    tags: dict[str, str] | None = None,
    gate: PromotionGate | None = None,
) -> dict[str, Any]:
    """Log the ONNX model to `run_id`, register it, and move the champion alias if it beats the holder and passes
    the promotion `gate`.

    `metric_value` is the value of `cfg.champion_metric` (higher is better); `tags` (the gate's record) are set on
    the version so a later `detector registry promote` can re-check it. Evaluating the same ONNX file of the same
    run again (an unchanged model, `dvc repro -f evaluate`) reuses the version registered the first time, found by
    its run and its `onnx_sha256` tag, instead of registering a copy. The version is registered whatever the gate
    says; a refusal is kept as its `gate.refused` tag (and the run's) and returned as `refused`.
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
    for key, value in (tags or {}).items():
        client.set_model_version_tag(cfg.registered_model, version, key, value)
    holder = champion_version(client, cfg)
    previous_version = holder.version if holder is not None else None
    previous_value = float(holder.tags.get(cfg.champion_metric, "nan")) if holder is not None else None
    better = previous_value is None or math.isnan(previous_value) or metric_value > previous_value
    refused: list[str] = []
    if gate is not None and str(previous_version) != version:
        holder_label = f"{cfg.champion_alias} v{previous_version}"
        refused = gate(dict(holder.tags) if holder is not None else None, holder_label)
    promote = better and not refused
    if refused:
        reason = "; ".join(refused)
        log.warning("model %s v%s stays off %s: %s", cfg.registered_model, version, cfg.champion_alias, reason)
        client.set_model_version_tag(cfg.registered_model, version, REFUSED_TAG, reason[:5000])
        client.set_tag(run_id, REFUSED_TAG, reason[:5000])
    elif gate is not None and existing is not None and REFUSED_TAG in existing.tags:
        client.delete_model_version_tag(cfg.registered_model, version, REFUSED_TAG)  # refused before, passes now
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
        **({"refused": "; ".join(refused)} if refused else {}),
    }


def champion_version(client: Any, cfg: MlflowConfig) -> Any | None:
    """The model version holding `cfg.champion_alias`, or None when no version does yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(cfg.registered_model, cfg.champion_alias)
    except MlflowException:
        return None


def quality_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The quality report (`reports/metrics.json` `quality`) as MLflow metrics:
    `<split>_<backend>_<variant>_<metric>[_<class>]`, e.g. `val_openvino_fp32_AP50-95_circle`, `val_onnxruntime_int8_
    parity`; the `.pt` row as `<split>_ultralytics_pt_...`."""
    split = report.get("split", "val")
    out: dict[str, float] = {}
    for row in report.get("models", {}).values():
        if "error" in row:
            continue
        prefix = f"{split}_{row['backend']}_{row['variant']}"
        for key in ("mAP50", "mAP50-95", "precision", "recall", "parity"):
            if row.get(key) is not None:
                out[mlflow_metric_name(f"{prefix}_{key}")] = float(row[key])
        for name, values in row.get("per_class", {}).items():
            for key, value in values.items():
                out[mlflow_metric_name(f"{prefix}_{key}_{name}")] = float(value)
        for name, value in row.get("parity_per_class", {}).items():
            out[mlflow_metric_name(f"{prefix}_parity_{name}")] = float(value)
    return out


def quality_table(report: dict[str, Any]) -> dict[str, list[Any]]:
    """The quality report as columns (one row per model x backend x class, and an `all` row per model x backend),
    for `mlflow.log_table`: the run page shows it as a table that can be sorted by class."""
    columns: dict[str, list[Any]] = {
        k: [] for k in ("variant", "backend", "class", "AP50-95", "precision", "recall", "parity")
    }

    def add(row: dict[str, Any], name: str, values: dict[str, Any], parity: Any) -> None:
        for key, value in (("variant", row["variant"]), ("backend", row["backend"]), ("class", name)):
            columns[key].append(value)
        columns["AP50-95"].append(values.get("AP50-95", values.get("mAP50-95")))
        columns["precision"].append(values.get("precision"))
        columns["recall"].append(values.get("recall"))
        columns["parity"].append(parity)

    for row in report.get("models", {}).values():
        if "error" in row:
            continue
        add(row, "all", row, row.get("parity"))
        for name, values in row.get("per_class", {}).items():
            add(row, name, values, row.get("parity_per_class", {}).get(name))
    return columns
