"""The INT8 gate at 640 px, measured: FP32 vs INT8 val/test mAP through our runtime, on every CPU backend.

The last step of `scripts/int8_640.sh` (which generates a 640 px v1 dataset, fine-tunes the default model on it,
exports it to ONNX and quantizes it with `detector export int8`). Reads that script's work folder and writes
`reports/int8_640.json` and `reports/int8_640.md`:

    python scripts/int8_640_report.py --work runs/int8_640 [--out reports/int8_640]

Work folder layout (what the shell script leaves there): `data/v1/` (the dataset, with its manifest.json),
`models/model.onnx` and `models/model.int8.onnx`, `reports/train.json` (the train stage's report), `int8.json`
(the output of `detector export int8`: quantization settings and the gate) and `settings.json` (the script's
settings and the training wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python scripts/int8_640_report.py` from a checkout: the project's own modules

BACKENDS = ("onnxruntime", "openvino")
SPLITS = ("val", "test")
PRECISIONS = ("fp32", "int8")


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def drops(metrics: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, float]]:
    """FP32 minus INT8 mAP50-95 per backend and split (positive: INT8 is worse), from `metrics[backend][precision]
    [split]`; a backend or split missing for either precision is left out."""
    out: dict[str, dict[str, float]] = {}
    for backend, by_precision in metrics.items():
        fp32, int8 = by_precision.get("fp32", {}), by_precision.get("int8", {})
        splits = {s: fp32[s]["mAP50-95"] - int8[s]["mAP50-95"] for s in SPLITS if s in fp32 and s in int8}
        if splits:
            out[backend] = splits
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}"}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ultralytics", "torch", "onnxruntime", "openvino", "nncf"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def evaluate(models: dict[str, Path], dataset: Path, backends: list[str]) -> dict[str, Any]:
    """`metrics[backend][precision][split]` (our runtime's mAP; the backends that cannot run here are skipped)."""
    from detector.errors import DatasetError
    from detector.evaluation import evaluate_split
    from detector.runtime import Detector
    from detector.runtime.backends import available

    reasons = available()
    metrics: dict[str, Any] = {}
    for backend in backends:
        if reasons[backend]:
            print(f"int8_640_report: {backend} cannot run here ({reasons[backend]}); skipped", file=sys.stderr)
            continue
        for precision, path in models.items():
            with Detector.load(path, backend=backend) as detector:
                for split in SPLITS:
                    try:
                        result = evaluate_split(detector, dataset, split).as_dict()
                    except DatasetError:
                        continue
                    metrics.setdefault(backend, {}).setdefault(precision, {})[split] = result
    return metrics


def build_report(work: Path, backends: list[str]) -> dict[str, Any]:
    from detector.provenance import git_commit

    dataset = work / "data" / "v1"
    models = {"fp32": work / "models" / "model.onnx", "int8": work / "models" / "model.int8.onnx"}
    manifest = read_json(dataset / "manifest.json")
    train = read_json(work / "reports" / "train.json")
    int8 = read_json(work / "int8.json")
    metrics = evaluate(models, dataset, backends)
    return {
        "settings": read_json(work / "settings.json"),
        "dataset": {k: manifest[k] for k in ("version", "imgsz", "seed", "counts", "sha256")},
        "training": {
            "architecture": train["architecture"],
            "weights_sha256": train["weights_sha256"],
            "final_metrics": train["metrics"],  # Ultralytics' validator on best.pt (val split)
        },
        "quantization": int8["quantization"],
        "gate": int8["gate"],
        "metrics": metrics,
        "drop_mAP50-95": drops(metrics),
        "machine": machine(),
        "versions": versions(),
        "commit": git_commit(REPO),
    }


def render_markdown(report: dict[str, Any]) -> str:
    settings, dataset, gate, quant = report["settings"], report["dataset"], report["gate"], report["quantization"]
    counts = dataset["counts"]
    passed = gate["drop"] <= gate["max_drop"]
    lines = [
        "# INT8 accuracy gate on a 640 px model",
        "",
        f"Generated by `{settings['command']}` (`scripts/int8_640_report.py`); numbers from `reports/int8_640.json`.",
        "",
        f"- Data: generated `{dataset['version']}` at {dataset['imgsz']} px, seed {dataset['seed']}: "
        f"train {counts['train']} / val {counts['val']} / test {counts['test']} images.",
        f"- Model: `{settings['weights']}` ({settings['architecture']}) fine-tuned at "
        f"{settings['imgsz']} px for {settings['epochs']} epochs in {settings['train_seconds'] / 60:.1f} min "
        f"on {report['machine']['cores']} CPU cores ({report['machine']['cpu']}), exported to ONNX at "
        f"{settings['imgsz']} px.",
        f"- INT8: {quant['tool']}, preset `{quant['preset']}`, {quant['subset_size']} {quant['calibration_split']} "
        f"images, fast_bias_correction {str(quant['fast_bias_correction']).lower()}, head decode "
        f"{'kept in float (ignored scope)' if quant['ignored_patterns'] else 'quantized'}; "
        f"TensorRT-compatible Q/DQ: {'yes' if quant['tensorrt_compatible'] else 'no'}.",
        f"- Gate (`detector export int8`, ONNX Runtime, {gate['split']}): FP32 {gate['fp32']['mAP50-95']:.4f}, "
        f"INT8 {gate['int8']['mAP50-95']:.4f}, drop {gate['drop']:+.4f} (max {gate['max_drop']}): "
        f"**{'passed' if passed else 'FAILED'}**.",
        *([f"- Note: {settings['note']}"] if settings.get("note") else []),
        "",
        "| backend | split | FP32 mAP50 | INT8 mAP50 | FP32 mAP50-95 | INT8 mAP50-95 | drop |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, by_precision in report["metrics"].items():
        for split in SPLITS:
            fp32, int8 = by_precision.get("fp32", {}).get(split), by_precision.get("int8", {}).get(split)
            if fp32 is None or int8 is None:
                continue
            lines.append(
                f"| {backend} | {split} | {fp32['mAP50']:.4f} | {int8['mAP50']:.4f} | {fp32['mAP50-95']:.4f} | "
                f"{int8['mAP50-95']:.4f} | {fp32['mAP50-95'] - int8['mAP50-95']:+.4f} |"
            )
    lines += ["", "drop = FP32 − INT8 (positive: INT8 is worse). Versions: "]
    lines[-1] += ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + "."
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work", type=Path, required=True, help="the work folder of scripts/int8_640.sh")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "int8_640", help="writes OUT.json, OUT.md")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args(argv)

    from detector.files import write_atomic

    report = build_report(args.work, args.backends)
    write_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_atomic(args.out.with_suffix(".md"), render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
