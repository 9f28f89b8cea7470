"""`detector predict IMAGE...`: detections as JSON, one result per image."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.main import Commands
from cli.output import print_json
from cli.wiring import engine_builder
from detector.config import BACKEND_CHOICES, Config


def cmd_predict(args: argparse.Namespace, config: Config) -> None:
    from detector.runtime import BackendOptions, Detector, Timings
    from detector.runtime.images import read_image
    from detector.runtime.payload import prediction_payload

    inf = config.inference
    model = args.model or inf.model_path
    backend = args.backend or inf.backend
    options = BackendOptions.from_config(config, engine_builder=engine_builder())
    out = []
    loaded = Detector.load(model, backend, options, conf=inf.conf, iou=inf.iou, max_det=inf.max_det, rect=inf.rect)
    with loaded as det:
        info = det.describe()
        for path in args.images:
            image = read_image(path, inf.server.max_pixels)
            timings = Timings()
            (result,) = det.predict_batch([image], conf=args.conf, iou=args.iou, max_det=args.max_det, timings=timings)
            out.append({"file": str(path), **prediction_payload(result, image.shape, info, timings.as_dict())})
    print_json(out)


def register(commands: Commands) -> None:
    p = commands.add(
        "predict",
        cmd_predict,
        "detect objects in images; prints a JSON list, one result per image",
        positional_overrides=False,  # the images are positional
    )
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--model", help="ONNX file (default: inference.model_path)")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    p.add_argument("--conf", type=float)
    p.add_argument("--iou", type=float)
    p.add_argument("--max-det", type=int)
