"""Training: Ultralytics on a validated dataset, every run an MLflow run.

Outputs (DVC stage `train`): `models/best.pt`, `reports/train.json` (final validation metrics and the MLflow run
id), `reports/train_curves.csv` (per-epoch metrics, a DVC plot).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detector.config import Config, config_to_flat_dict
from detector.data import check_dataset, dataset_hash
from detector.data.yolo_format import present_splits, write_data_yaml
from detector.errors import ConfigError, DatasetError, MissingDependencyError
from detector.files import write_atomic
from detector.paths import BEST_WEIGHTS, TRAIN_REPORT
from detector.provenance import git_commit
from detector.runtime.metadata import sha256_file
from detector.training import tracking
from detector.training.threads import CpuShare, ThreadKeeper

log = logging.getLogger(__name__)

CURVES_OUT = Path("reports/train_curves.csv")


@dataclass(frozen=True)
class TrainResult:
    weights: str
    weights_sha256: str
    run_id: str
    metrics: dict[str, float]
    dataset_version: str
    dataset_sha256: str
    architecture: str


def prepare_ultralytics() -> Any:
    # Keep Ultralytics' settings inside the project (its global file is the user's), never reach the network,
    # and switch off its own MLflow callback: this module logs the run itself, with more context.
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(".cache/ultralytics").resolve()))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics import YOLO, settings
    except ImportError as exc:
        raise MissingDependencyError(f"training needs the `train` extra (uv sync --extra train): {exc}") from exc
    if settings.get("mlflow") or settings.get("dvc"):
        settings.update({"mlflow": False, "dvc": False})
    return YOLO


def train(config: Config) -> TrainResult:
    """Validate the dataset, train, log everything to MLflow, write the stage outputs atomically."""
    dataset_dir = config.data.dataset_dir
    names = check_dataset(dataset_dir)  # raises DatasetError listing every problem with file and line
    data_hash = dataset_hash(dataset_dir)
    YOLO = prepare_ultralytics()
    tc = config.train
    model = build_model(YOLO, tc.model)  # before the MLflow run: an unusable architecture leaves no FAILED run behind
    mlflow = tracking.setup(tc.mlflow) if tc.mlflow.enabled else None

    run_name = f"{tc.architecture}-{config.data.version}-e{tc.epochs}-{tc.imgsz}"
    # The run ends FAILED (KILLED on Ctrl-C) when anything below raises, Ultralytics' own errors included.
    with (
        tempfile.TemporaryDirectory(prefix="train-") as tmp,
        CpuShare() as share,
        tracking.active_run(mlflow, run_name) as run_id,
    ):
        threads = ThreadKeeper(share, pinned=None if tc.threads == "auto" else tc.threads)
        threads.install(model)
        data_yaml = write_data_yaml(Path(tmp) / "data.yaml", names, present_splits(dataset_dir), dataset_dir)
        if mlflow:
            mlflow.log_params(_loggable(config_to_flat_dict(config), exclude=("inference.",)))
            mlflow.set_tags(
                {
                    "git_commit": git_commit(),
                    "data.version": config.data.version,
                    "data.sha256": data_hash,
                    "architecture": tc.architecture,
                    "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
                }
            )
        if mlflow:
            model.add_callback("on_fit_epoch_end", _epoch_logger(mlflow))
        model.train(
            data=str(data_yaml),
            epochs=tc.epochs,
            imgsz=tc.imgsz,
            batch=tc.batch,
            lr0=tc.lr0,
            optimizer=tc.optimizer,
            patience=tc.patience,
            workers=tc.workers,
            seed=tc.seed,
            device=tc.device,
            project=str(Path(tc.project).resolve()),
            name=tc.name,
            exist_ok=True,
            plots=False,
            deterministic=True,
            verbose=False,
            **tc.ultralytics,
        )
        trainer = model.trainer
        best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
        final = {tracking.mlflow_metric_name(k): float(v) for k, v in (trainer.metrics or {}).items()}
        if not final:
            raise DatasetError("training produced no validation metrics; is the val split empty?")
        result = TrainResult(
            weights=str(BEST_WEIGHTS),
            weights_sha256=sha256_file(best),
            run_id=run_id,
            metrics=final,
            dataset_version=config.data.version,
            dataset_sha256=data_hash,
            architecture=tc.architecture,
        )
        curves = _write_outputs(best, Path(trainer.save_dir) / "results.csv", result)
        if mlflow:
            if threads.counts:  # a CPU training: the thread counts it computed on, in order
                mlflow.set_tag("cpu_threads", ",".join(map(str, threads.counts)))
            mlflow.log_metrics({f"final_{k}": v for k, v in final.items()})
            mlflow.log_artifact(str(BEST_WEIGHTS), artifact_path="weights")
            mlflow.log_artifact(str(curves), artifact_path="reports")
            mlflow.log_artifact(str(TRAIN_REPORT), artifact_path="reports")
    return result


def build_model(YOLO: Any, spec: str) -> Any:
    """`YOLO(spec)`, or a ConfigError that names `spec` and what to use instead (Ultralytics raises a bare
    FileNotFoundError from deep inside for an architecture it does not know)."""
    if spec.endswith(".pt") and not Path(spec).is_file():
        raise ConfigError(f"train.model={spec}: weights file not found (give a path to a .pt, or an architecture YAML)")
    try:
        return YOLO(spec)
    except (FileNotFoundError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"train.model={spec}: Ultralytics cannot build this model ({type(exc).__name__}: {exc}). Use an "
            "architecture YAML it ships (the project tests yolov8n.yaml, yolo11n.yaml and yolo26n.yaml: "
            "configs/experiments.yaml) or a local .pt to fine-tune"
        ) from exc


def _epoch_logger(mlflow: Any) -> Any:
    def on_fit_epoch_end(trainer: Any) -> None:
        if trainer.epoch >= trainer.epochs:
            return  # Ultralytics' final evaluation of best.pt fires this again; it is logged as final_* metrics
        values = {
            **trainer.label_loss_items(trainer.tloss, prefix="train"),
            **(trainer.metrics or {}),
            **{f"lr/{k}": v for k, v in (trainer.lr or {}).items()},
        }
        metrics = {tracking.mlflow_metric_name(k): float(v) for k, v in values.items()}
        mlflow.log_metrics(metrics, step=trainer.epoch + 1)

    return on_fit_epoch_end


def _loggable(flat: dict[str, Any], exclude: tuple[str, ...]) -> dict[str, Any]:
    return {k: ("" if v is None else v) for k, v in flat.items() if not k.startswith(exclude)}


def _write_outputs(best: Path, results_csv: Path, result: TrainResult) -> Path:
    """Write the stage outputs; each appears complete or not at all."""
    write_atomic(BEST_WEIGHTS, best.read_bytes())
    rows = _read_curves(results_csv)
    curves = io.StringIO(newline="")
    writer = csv.DictWriter(curves, fieldnames=list(rows[0]) if rows else ["epoch"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(CURVES_OUT, curves.getvalue())
    write_atomic(TRAIN_REPORT, json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
    return CURVES_OUT


def _read_curves(results_csv: Path) -> list[dict[str, str]]:
    """Ultralytics' results.csv with MLflow-style column names (DVC plots read them)."""
    if not results_csv.exists():
        return []
    with results_csv.open() as fh:
        return [
            {tracking.mlflow_metric_name(k.strip()): v.strip() for k, v in row.items()} for row in csv.DictReader(fh)
        ]
