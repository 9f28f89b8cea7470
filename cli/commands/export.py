"""`detector export ...`: `onnx` (the pipeline's export stage), `int8`, `engine` (TensorRT) and `triton`.

What an export is built with is configuration, set like every other key: `export.engine.precision=fp32`,
`export.engine.max_batch=16` (configs/export.yaml lists them); the flags here only name inputs, outputs and devices."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.main import Commands, require
from cli.output import print_json
from detector.config import Config
from detector.paths import BEST_WEIGHTS
from detector.runtime.engines import (
    EngineInfo,
    EngineSpec,
    resolve_engine,
    sidecar_path,
)


def cmd_onnx(args: argparse.Namespace, config: Config) -> None:
    require("ultralytics", "train")
    from cli.stages import stage_export

    print_json(stage_export(config, weights=args.weights, out=args.out))


def cmd_engine(args: argparse.Namespace, config: Config) -> None:
    from export.tensorrt import build_engine

    spec = EngineSpec.from_config(config.export.engine)  # set with export.engine.* overrides, validated there
    onnx_path = Path(args.onnx or config.export.onnx_path)
    timing_cache = not args.no_timing_cache

    def build(path: Path, spec: EngineSpec, device: int) -> EngineInfo:
        return build_engine(path, spec, device, timing_cache=timing_cache)

    # --force rebuilds under the same lock as every other build of this cache entry (replicas may be starting)
    info, _ = resolve_engine(onnx_path, spec, args.device, build=build, force=args.force)
    print(json.dumps(json.loads(info.to_json()) | {"sidecar": str(sidecar_path(info.path))}, indent=2))


def cmd_triton(args: argparse.Namespace, config: Config) -> None:
    from export.triton import write_repository

    onnx_path = Path(args.model or config.export.onnx_path)
    written = write_repository(
        onnx_path,
        Path(args.out),
        name=args.name,
        max_batch=args.max_batch,
        instances=args.instances,
        kind="KIND_CPU" if args.cpu else "KIND_GPU",
        plan=Path(args.plan) if args.plan else None,
        max_queue_delay_us=args.max_queue_delay_us,
    )
    print(json.dumps({"repository": str(args.out), "configs": [str(p) for p in written]}, indent=2))


def cmd_int8(args: argparse.Namespace, config: Config) -> None:
    require("nncf", "train")
    from cli.stages import stage_quantize

    print_json(stage_quantize(config, onnx=args.onnx, out=args.out, data=args.data, report=args.report))


def register(commands: Commands) -> None:
    commands.group("export", "export models: ONNX, INT8 ONNX, TensorRT engines, a Triton repository")
    p = commands.add("onnx", cmd_onnx, "export Ultralytics weights to ONNX with embedded metadata", "export")
    p.add_argument("--weights", default=str(BEST_WEIGHTS), help=f"default: {BEST_WEIGHTS} (the train stage's)")
    p.add_argument("--out", default=None, help="default: export.onnx_path")

    p = commands.add(
        "int8",
        cmd_int8,
        "INT8 post-training quantization (NNCF) to a Q/DQ ONNX, gated on val mAP against the FP32 model",
        "export",
    )
    p.add_argument("--onnx", help="FP32 ONNX model (default: export.onnx_path)")
    p.add_argument("--out", help="INT8 ONNX to write (default: export.int8.out_path)")
    p.add_argument("--data", help="YOLO dataset to calibrate and gate on (default: the configured data version)")
    p.add_argument(
        "--report",
        help="write the outcome (accepted, or refused and why) as JSON here; a refused INT8 model then exits 0 "
        "(the DVC stage: the pipeline goes on with the FP32 model). Without it a refusal is an error (exit 2)",
    )

    p = commands.add(
        "engine",
        cmd_engine,
        "build (or reuse from the cache) a TensorRT engine for this GPU from an ONNX model",
        "export",
    )
    p.description = (
        f"{p.description}. Precision, batch profile, input dtype, workspace and cache folder are the export.engine.* "
        "keys, set as overrides: detector export engine export.engine.precision=fp32 export.engine.max_batch=16"
    )
    p.add_argument("--onnx", help="ONNX model (default: export.onnx_path)")
    p.add_argument("--device", type=int, default=0, help="GPU index")
    p.add_argument("--force", action="store_true", help="rebuild even when a valid cached engine exists")
    p.add_argument("--no-timing-cache", action="store_true")

    p = commands.add(
        "triton", cmd_triton, "write an NVIDIA Triton model repository for the ONNX (and a TensorRT plan)", "export"
    )
    p.add_argument("--model", help="ONNX model (default: export.onnx_path)")
    p.add_argument("--out", required=True, help="model repository folder (created)")
    p.add_argument("--name", default="detector", help="Triton model name (default: detector)")
    p.add_argument("--max-batch", type=int, default=8, help="max_batch_size (default 8)")
    p.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    p.add_argument("--cpu", action="store_true", help="KIND_CPU instances for the ONNX model (default KIND_GPU)")
    p.add_argument("--plan", help="a TensorRT engine (from `detector export engine`): adds the <name>_trt model")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batching wait (default 2000)")
