"""`python -m benchmarks.run {backends,http,all}`: latency of every backend and of the HTTP service, side by side
with Ultralytics' own predictor, written to reports/benchmark.{json,md,png}.

Exit status: 0 complete report; 1 report written but some cell failed (`"complete": false`); 2 bad input (unknown
backend, unloadable model, unreachable service), nothing written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.errors import BenchmarkInputError
from benchmarks.machine import usable_cores
from benchmarks.orchestrate import run
from benchmarks.report import write_report
from benchmarks.stats import QUICK, Budget

log = logging.getLogger("benchmarks")

DEFAULT_BUDGET = Budget(warmup=1, min_iters=3, max_iters=100, max_seconds=1.5, block=5, settle=True)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out-dir", type=Path, default=Path("reports"), help="where benchmark.{json,md,png} go")
    common.add_argument("--quick", action="store_true", help="tiny iteration counts (tests, smoke runs)")
    common.add_argument("--threads", type=int, default=0, help="threads per runner (default: usable cores)")
    common.add_argument("--warmup", type=int, help=f"warm-up calls per cell (default {DEFAULT_BUDGET.warmup})")
    common.add_argument("--min-iters", type=int, help=f"default {DEFAULT_BUDGET.min_iters}")
    common.add_argument("--max-iters", type=int, help=f"default {DEFAULT_BUDGET.max_iters}")
    common.add_argument("--max-seconds", type=float, help=f"per cell, default {DEFAULT_BUDGET.max_seconds}")
    common.add_argument("--images", type=Path, help="folder of test images (default: Ultralytics' bundled photos)")
    common.add_argument("-v", "--verbose", action="store_true")

    model_args = argparse.ArgumentParser(add_help=False)
    model_args.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    model_args.add_argument("--weights", type=Path, help="Ultralytics .pt (default: best.pt beside the model)")
    model_args.add_argument("--backends", type=_names, help="comma-separated (default: every available one)")
    model_args.add_argument("--batches", type=_ints, default=[1, 4, 8])
    model_args.add_argument("--sizes", type=_ints, help="input sizes (default: the model's own and 640)")
    model_args.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="TensorRT engines only")
    model_args.add_argument("--no-ultralytics-pt", action="store_true", help="skip the YOLO(best.pt) runner")
    model_args.add_argument("--no-peak", action="store_true", help="skip the GEMM peak measurement")
    model_args.add_argument("--cache-dir", type=Path, default=Path(".cache/benchmarks"), help="re-exported sizes")

    http_args = argparse.ArgumentParser(add_help=False)
    http_args.add_argument("--concurrency", type=_ints, default=[1, 2, 4, 8])
    http_args.add_argument(
        "--inputs", type=_names, default=["multipart", "json"], help="multipart,json (raw: the JPEG as the body)"
    )
    http_args.add_argument("--requests", type=int, default=100, help="most requests per cell")
    http_args.add_argument("--http-seconds", type=float, default=10.0, help="most seconds per cell")

    sub.add_parser("backends", parents=[common, model_args], help="in-process latency of each backend")
    p = sub.add_parser("http", parents=[common, http_args], help="latency/throughput of a running service")
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    p = sub.add_parser("all", parents=[common, model_args, http_args], help="backends, then HTTP")
    p.add_argument("--url", help="a running service (default: start one on the largest size, fastest backend)")
    return parser


def _budget(args: argparse.Namespace) -> Budget:
    base = QUICK if args.quick else DEFAULT_BUDGET
    try:
        return Budget(
            warmup=base.warmup if args.warmup is None else args.warmup,
            min_iters=base.min_iters if args.min_iters is None else args.min_iters,
            max_iters=base.max_iters if args.max_iters is None else args.max_iters,
            max_seconds=base.max_seconds if args.max_seconds is None else args.max_seconds,
            block=base.block,
            settle=base.settle,
        )
    except ValueError as exc:
        raise BenchmarkInputError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would drown the progress
    try:
        report = run(args, _budget(args), args.threads or usable_cores())
    except BenchmarkInputError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    paths = write_report(report, args.out_dir)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    if not report["complete"]:
        print(
            f"benchmark: incomplete: {len(report['errors'])} failure(s); first: {report['errors'][0]}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
