"""The DVC stages as functions: data -> train -> export -> evaluate -> benchmark (`dvc.yaml` runs them via the CLI)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.config import Config
from detector.errors import AccuracyGateError, ConfigError, DatasetError, ModelLoadError, QuantizationRefusedError
from detector.files import write_atomic
from detector.paths import BEST_WEIGHTS, TRAIN_REPORT
from detector.runtime.metadata import read_onnx_metadata, sha256_file

if TYPE_CHECKING:
    from detector.evaluation.gate import GateRecord, ShadowSample

log = logging.getLogger(__name__)

METRICS_OUT = Path("reports/metrics.json")
QUANTIZE_REPORT = Path("reports/quantize.json")  # the quantize stage's outcome: accepted, or refused and why


def stage_data(config: Config) -> dict[str, Any]:
    """Generate the configured dataset version (or validate a user dataset) and report its summary.

    A version `detector data import` wrote is never generated over: it is checked (valid, content hash as at
    import) and reported. (DVC tracks imported versions with their own `data/<name>.dvc`, not with this stage.)"""
    from detector.data import VERSIONS, check_dataset, dataset_hash, generate_dataset
    from detector.data.importers import imported_manifest, verify_imported

    if config.data.source != "generated":
        names = check_dataset(config.data.dataset_dir)
        return {
            "dataset": str(config.data.dataset_dir),
            "names": names,
            "sha256": dataset_hash(config.data.dataset_dir),
        }
    if imported_manifest(config.data.dataset_dir) is not None:
        return verify_imported(config.data.dataset_dir)
    if config.data.version not in VERSIONS:
        raise DatasetError(
            f"data.version={config.data.version}: not a generator version ({', '.join(VERSIONS)}) and "
            f"{config.data.dataset_dir} is not an imported dataset; import it with `detector data import ... "
            f"--version {config.data.version}`, or fetch it with `dvc pull`"
        )
    summary = generate_dataset(config.data)
    check_dataset(config.data.dataset_dir)
    return {"dataset": str(summary.root), "version": summary.version, "counts": summary.counts}


def stage_train(config: Config) -> dict[str, Any]:
    from dataclasses import asdict

    from detector.training.train import train

    return asdict(train(config))


def stage_export(config: Config, weights: str = str(BEST_WEIGHTS), out: str | None = None) -> dict[str, Any]:
    import tempfile

    from export.onnx import export_onnx
    from export.profile import add_reference_profile
    from export.thresholds import add_class_thresholds

    provenance = export_provenance(Path(weights), _read_json(TRAIN_REPORT) if TRAIN_REPORT.exists() else {})
    target = Path(out or config.export.onnx_path)
    # Exported into a scratch folder first: the per-class thresholds and the drift profile measured on it go into its
    # metadata before the file appears at `target` (models/model.onnx is a DVC output; nothing rewrites it later).
    with tempfile.TemporaryDirectory(prefix="export-thr-") as tmp:
        candidate = Path(tmp) / target.name
        export_onnx(
            weights,
            candidate,
            imgsz=config.onnx_imgsz,
            opset=config.export.opset,
            dynamic=config.export.dynamic,
            simplify=config.export.simplify,
            half=config.export.half,
            end2end=config.export.end2end,
            **provenance,
        )
        add_class_thresholds(candidate, config.data.dataset_dir, config.export.thresholds)
        metadata = add_reference_profile(candidate, config.data.dataset_dir, config.export.profile)
        write_atomic(target, candidate.read_bytes())
    result = _read_json_text(metadata.to_json())
    profile = result.pop("reference_profile")  # kilobytes of histograms: the command prints what it measured on
    result["reference_profile"] = {"split": profile["split"], "images": profile["images"]} if profile else {}
    return result


def export_provenance(weights: Path, train_report: dict[str, Any]) -> dict[str, str]:
    """Version, run id, dataset and architecture for the ONNX made from `weights`, taken from those weights.

    `reports/train.json` describes the weights the train stage wrote; it applies only when `weights` is that very
    file (same sha256). Other weights (`--weights other.pt`) get a version derived from their own sha256 and the
    architecture stored in the checkpoint, and no run id or dataset: nothing says which run or data produced them.
    """
    if not weights.is_file():
        return {}  # export_onnx reports the missing file
    sha = sha256_file(weights)
    if train_report.get("weights_sha256") == sha:
        arch = str(train_report.get("architecture", ""))
        data_version = str(train_report.get("dataset_version", ""))
        return {
            "version": f"{arch}-{data_version}-{sha[:8]}",
            "source_run_id": str(train_report.get("run_id", "")),
            "dataset_version": data_version,
            "architecture": arch,
        }
    log.info(
        "%s (sha256 %s) is not the model %s describes: exporting it without a run id or dataset version, "
        "versioned by its own sha256",
        weights,
        sha[:12],
        TRAIN_REPORT,
    )
    return {"version": "", "source_run_id": "", "dataset_version": "", "architecture": ""}


def stage_quantize(
    config: Config,
    onnx: str | None = None,
    out: str | None = None,
    data: str | None = None,
    report: str | None = None,
) -> dict[str, Any]:
    """INT8 Q/DQ ONNX from the exported FP32 model, calibrated on the train split, gated on val mAP50-95.

    With `report` (the DVC stage), a refused INT8 model (gate failed, graph unusable, quantizer failed) is an
    outcome, not an error: the reason is written to `report` with status "refused", the pipeline goes on with the
    FP32 model, and the evaluate stage copies the record into metrics.json. Without it, a refusal raises."""
    from detector.runtime.precision import GATES_FILE
    from export.int8 import bf16_gate, export_int8

    out_path = Path(out or config.export.int8.out_path)
    try:
        result = {
            "status": "accepted",
            **export_int8(
                Path(onnx or config.export.onnx_path),
                out_path,
                Path(data) if data else config.data.dataset_dir,
                config.export.int8,
                config.export.thresholds,
                config.export.profile,
            ),
        }
    except (AccuracyGateError, QuantizationRefusedError) as exc:
        if report is None:
            raise
        out_path.unlink(missing_ok=True)  # no INT8 model that looks good is left behind
        out_path.parent.mkdir(parents=True, exist_ok=True)  # the stage's output folder exists, empty
        log.warning("INT8 model refused, going on with the FP32 model: %s", exc)
        result = {"status": "refused", "reason": str(exc), "model": None}
        if isinstance(exc, AccuracyGateError) and exc.gate:
            result["gate"] = exc.gate
    # What serving's `precision: auto` may pick from (detector/runtime/precision.py): beside the INT8 twin, whose
    # presence is its pass, the bf16 gate of this CPU.
    onnx_path = Path(onnx or config.export.onnx_path)
    result["bf16"] = bf16_gate(onnx_path, Path(data) if data else config.data.dataset_dir, config.export.int8)
    log.info("bf16 gate: %s", "passed" if result["bf16"]["passed"] else result["bf16"]["reason"])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    gates = {"int8": {"passed": result["status"] == "accepted"}, "bf16": result["bf16"]}
    write_atomic(out_path.parent / GATES_FILE, json.dumps(gates, indent=2, sort_keys=True) + "\n")
    if report is not None:
        write_atomic(Path(report), json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def stage_evaluate(config: Config, register: bool = True) -> dict[str, Any]:
    """mAP of the exported ONNX through our runtime, beside Ultralytics' validation of the .pt; the quality report
    (every model on every backend, per class, parity with the .pt); register it, behind the promotion gate.

    A model the gate refuses is still registered, only the alias stays: the refusal is recorded in metrics.json
    (`registry.refused`) and on the run, and the stage succeeds (a refused model is an outcome, not an error)."""
    onnx_path = Path(config.export.onnx_path)
    if not onnx_path.exists():
        raise ModelLoadError(f"{onnx_path} not found: run the export stage first (dvc repro export)")
    dataset_dir = config.data.dataset_dir
    splits, model_info = _evaluate_model(onnx_path, dataset_dir)
    results: dict[str, Any] = dict(splits)
    int8_path = Path(config.export.int8.out_path)
    if int8_path.exists():  # the quantize stage's INT8 twin, scored the same way
        results["int8"] = {"status": "accepted", "model": str(int8_path), **_evaluate_model(int8_path, dataset_dir)[0]}
    elif QUANTIZE_REPORT.exists() and (record := _read_json(QUANTIZE_REPORT)).get("status") == "refused":
        results["int8"] = {"status": "refused", "reason": record.get("reason", ""), "model": None}
    pt_val = _ultralytics_val(config, BEST_WEIGHTS)
    results["ultralytics_val_pt"] = {k: v for k, v in pt_val.items() if k != "per_class"}
    results["quality"] = quality = _quality_report(config, onnx_path, int8_path if int8_path.exists() else None)
    if pt_val:
        quality["models"]["pt_ultralytics"] = {"model": str(BEST_WEIGHTS), "backend": "ultralytics", "variant": "pt"}
        quality["models"]["pt_ultralytics"] |= pt_val
    results["model"] = {k: model_info[k] for k in ("name", "version", "input_size", "dataset_version")}
    mlcfg = config.train.mlflow
    run_id = model_info.get("source_run_id") or ""
    if register and mlcfg.enabled and run_id:
        from detector.evaluation.gate import gate_record, record_to_tags
        from detector.training.tracking import register_champion

        value = champion_value(results, mlcfg.champion_metric)
        candidate = gate_record(quality, overall=value)
        results["registry"] = register_champion(
            mlcfg,
            run_id,
            onnx_path,
            value,
            json.dumps(model_info),
            tags=record_to_tags(candidate),
            gate=promotion_gate(config, candidate),
        )
    write_atomic(METRICS_OUT, json.dumps(results, indent=2, sort_keys=True) + "\n")
    if "registry" in results:
        import mlflow

        from detector.training.tracking import quality_metrics, quality_table

        with mlflow.start_run(run_id=run_id):
            metrics = {f"onnx_{s}_{k}": v for s in ("val", "test") for k, v in results.get(s, {}).items()}
            metrics |= {
                f"int8_{s}_{k}": v for s in ("val", "test") for k, v in results.get("int8", {}).get(s, {}).items()
            }
            mlflow.log_metrics(metrics | quality_metrics(quality))
            mlflow.log_table(quality_table(quality), artifact_file="reports/quality_table.json")
            mlflow.log_artifact(str(METRICS_OUT), artifact_path="reports")
    return results


def promotion_gate(
    config: Config, candidate: GateRecord, shadow: ShadowSample | None = None
) -> Callable[[dict[str, str] | None, str], list[str]]:
    """The promotion gate `register_champion` applies: `candidate` against the holder's tags (configs/quality.yaml)."""
    from detector.evaluation.gate import check_promotion, record_from_tags

    def gate(holder_tags: dict[str, str] | None, label: str) -> list[str]:
        champion = None if holder_tags is None else record_from_tags(holder_tags, config.train.mlflow.champion_metric)
        decision = check_promotion(candidate, champion, config.quality, label, shadow)
        for note in decision.notes:
            log.info("promotion gate: %s", note)
        return list(decision.reasons)

    return gate


def _quality_report(config: Config, onnx_path: Path, int8_path: Path | None) -> dict[str, Any]:
    """Every model on every configured backend, per class, with parity against the .pt's boxes (see
    detector/evaluation/quality.py); the .pt's boxes only where its weights are here."""
    from cli.wiring import engine_builder
    from detector.evaluation.quality import quality_report
    from detector.runtime.backends.base import BackendOptions

    rules = config.quality
    reference = None
    if BEST_WEIGHTS.exists():
        from detector.evaluation.reference import pt_detections

        reference = pt_detections(
            BEST_WEIGHTS, config.data.dataset_dir, rules.split, config.onnx_imgsz, rules.parity_conf
        )
    else:
        log.warning("%s not found: the quality report has no parity with the .pt", BEST_WEIGHTS)
    models = {"fp32": onnx_path, **({"int8": int8_path} if int8_path is not None else {})}
    options = BackendOptions.from_config(config, engine_builder=engine_builder()).pinned()  # the files as given
    return quality_report(models, config.data.dataset_dir, rules, reference, options)


def stage_benchmark(config: Config) -> int:
    """The DVC `benchmark` stage: quick latency of every backend on the exported model at its own input size (not
    `train.imgsz`: `export.imgsz` may differ), so `dvc exp show` lists latency beside mAP. `make bench` runs the full
    benchmark (640 px too, batches, HTTP) into the same files. Returns the benchmark's exit status."""
    from benchmarks.run import main as benchmark

    onnx_path = Path(config.export.onnx_path)
    size = max(read_onnx_metadata(onnx_path).imgsz)
    log.info("benchmarking %s at its input size %d px", onnx_path, size)
    argv = ["backends", "--model", str(onnx_path), "--sizes", str(size), "--batches", "1", "--max-seconds", "1"]
    return benchmark([*argv, "--no-ultralytics-pt"])


def champion_value(results: dict[str, Any], metric: str) -> float:
    """The value of `train.mlflow.champion_metric` (`<split>_<metric>`, e.g. `val_mAP50-95`) in the results."""
    split, _, key = metric.partition("_")
    if key not in results.get(split, {}):
        evaluated = ", ".join(s for s in ("val", "test") if s in results)
        raise ConfigError(
            f"train.mlflow.champion_metric={metric} needs the {split!r} split, which this dataset does not have "
            f"(evaluated: {evaluated})"
        )
    return float(results[split][key])


def _evaluate_model(path: Path, dataset_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """({split: metrics} for val and test (test skipped when the dataset has none), the model's describe())."""
    from detector.evaluation import evaluate_split
    from detector.runtime import Detector

    out: dict[str, Any] = {}
    with Detector.load(path, backend="onnxruntime") as detector:
        for split in ("val", "test"):
            try:
                out[split] = evaluate_split(detector, dataset_dir, split).as_dict()
            except DatasetError:
                if split == "val":
                    raise
                log.info("no %s split in %s; skipping it", split, dataset_dir)
        return out, detector.describe()


def _ultralytics_val(config: Config, weights: Path) -> dict[str, Any]:
    """Ultralytics' own validation of the .pt on the same split (the number our runtime's mAP is checked against)."""
    import tempfile

    from detector.data import load_names
    from detector.data.yolo_format import present_splits, write_data_yaml
    from detector.training.train import prepare_ultralytics

    if not weights.exists():
        return {}
    YOLO = prepare_ultralytics()
    dataset_dir = config.data.dataset_dir
    with tempfile.TemporaryDirectory(prefix="val-") as tmp:
        names = load_names(dataset_dir)
        data_yaml = write_data_yaml(Path(tmp) / "data.yaml", names, present_splits(dataset_dir), dataset_dir)
        # rect=False: `Model.val` defaults to rectangular batches padded by half a stride (a 128 px image becomes a
        # 160 px input), which is not the fixed letterboxed input the exported model is served with.
        metrics = YOLO(str(weights)).val(
            data=str(data_yaml),
            rect=False,
            imgsz=config.onnx_imgsz,
            batch=16,
            conf=0.001,
            iou=0.7,
            device="cpu",
            plots=False,
            verbose=False,
            project=tmp,
            name="val",
        )
    box = metrics.box
    per_class = {
        str(metrics.names[int(c)]): {"AP50-95": float(ap), "precision": float(p), "recall": float(r)}
        for c, ap, p, r in zip(box.ap_class_index, box.ap, box.p, box.r, strict=True)
    }
    return {
        "mAP50": float(box.map50),
        "mAP50-95": float(box.map),
        "precision": float(box.mp),
        "recall": float(box.mr),
        "per_class": per_class,
    }


def _read_json(path: Path) -> dict[str, Any]:
    return _read_json_text(path.read_text())


def _read_json_text(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data
