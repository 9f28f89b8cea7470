"""`detector` command line: data, train, export, evaluate, predict, serve.

Every command takes trailing `section.key=value` overrides of the configuration (configs/*.yaml).
Errors the user can fix print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from detector.config import Config, load_config
from detector.errors import DetectorError

log = logging.getLogger("detector")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_data_generate(args: argparse.Namespace, config: Config) -> None:
    from detector.pipeline import stage_data

    _print_json(stage_data(config))


def cmd_data_validate(args: argparse.Namespace, config: Config) -> None:
    from detector.data import check_dataset

    root = Path(args.path) if args.path else config.data.dataset_dir
    names = check_dataset(root)
    print(f"{root}: OK ({len(names)} classes: {', '.join(names.values())})")


def cmd_train(args: argparse.Namespace, config: Config) -> None:
    from detector.pipeline import stage_train

    _print_json(stage_train(config))


def cmd_export_onnx(args: argparse.Namespace, config: Config) -> None:
    from detector.pipeline import stage_export

    _print_json(stage_export(config, weights=args.weights, out=args.out))


def cmd_evaluate(args: argparse.Namespace, config: Config) -> None:
    from detector.pipeline import stage_evaluate

    _print_json(stage_evaluate(config, register=not args.no_register))


def cmd_predict(args: argparse.Namespace, config: Config) -> None:
    from detector.runtime import BackendOptions, Detector, Timings
    from detector.runtime.images import read_image
    from detector.runtime.payload import prediction_payload

    inf = config.inference
    model = args.model or inf.model_path
    backend = args.backend or inf.backend
    options = BackendOptions.from_config(config)
    out = []
    loaded = Detector.load(model, backend, options, conf=inf.conf, iou=inf.iou, max_det=inf.max_det, rect=inf.rect)
    with loaded as det:
        info = det.describe()
        for path in args.images:
            image = read_image(path, inf.server.max_pixels)
            timings = Timings()
            (result,) = det.predict_batch([image], conf=args.conf, iou=args.iou, max_det=args.max_det, timings=timings)
            out.append({"file": str(path), **prediction_payload(result, image.shape, info, timings.as_dict())})
    _print_json(out)


def cmd_serve(args: argparse.Namespace, config: Config) -> None:
    from api.server import serve

    serve(config, host=args.host, port=args.port, model=args.model, backend=args.backend)


def cmd_backends(args: argparse.Namespace, config: Config) -> None:
    from detector.runtime import backends

    _print_json({name: (why or "available") for name, why in backends.available().items()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", default="configs", help="folder with data/train/export/inference.yaml")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace, Config], None], help_: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        p.add_argument("overrides", nargs="*", default=[], help="config overrides, e.g. train.epochs=5")
        p.set_defaults(handler=handler)
        return p

    data = sub.add_parser("data", help="generate or validate datasets").add_subparsers(dest="data_cmd", required=True)
    add("generate", cmd_data_generate, "generate the configured dataset version under data/<version>/", data)
    p = add("validate", cmd_data_validate, "check a YOLO dataset; every problem is reported with file and line", data)
    p.add_argument("--path", help="dataset folder (default: the configured one)")
    add("train", cmd_train, "train with Ultralytics; the run is logged to MLflow")
    export = sub.add_parser("export", help="export models").add_subparsers(dest="export_cmd", required=True)
    p = add("onnx", cmd_export_onnx, "export Ultralytics weights to ONNX with embedded metadata", export)
    p.add_argument("--weights", default="models/best.pt")
    p.add_argument("--out", default=None, help="default: export.onnx_path")
    _add_engine_command(export, add)
    _add_triton_command(export, add)
    p = add("evaluate", cmd_evaluate, "mAP of the exported ONNX through this project's runtime; registers it")
    p.add_argument("--no-register", action="store_true", help="do not touch the MLflow model registry")
    p = sub.add_parser("predict", help="detect objects in images; prints a JSON list, one result per image")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--model", help="ONNX file (default: inference.model_path)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt"])
    p.add_argument("--conf", type=float)
    p.add_argument("--iou", type=float)
    p.add_argument("--max-det", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    p.set_defaults(handler=cmd_predict)
    p = add("serve", cmd_serve, "serve the HTTP API (FastAPI + uvicorn)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--model")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt"])
    add("backends", cmd_backends, "list inference backends and whether each can run here")
    _add_ui_command(sub, add)
    return parser


def _add_engine_command(export: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """`detector export engine`, provided by export/tensorrt.py (importable without TensorRT installed)."""
    try:
        from export.tensorrt import add_engine_command
    except ImportError:
        return
    add_engine_command(export, add)


def _add_triton_command(export: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """`detector export triton`, provided by export/triton.py."""
    from export.triton import add_triton_command

    add_triton_command(export, add)


def _add_ui_command(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """`detector ui`, provided by ui/app.py (the `ui` extra); absent when its client library is not installed."""
    try:
        from ui.app import add_ui_command
    except ImportError:
        return
    add_ui_command(sub, add)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.overrides, config_dir=args.config_dir)
        args.handler(args, config)
    except DetectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
