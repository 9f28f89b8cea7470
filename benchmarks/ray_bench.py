"""The service on Ray Serve vs `detector serve` (uvicorn), same model, same images, same machine, one run.

    uv run python -m benchmarks.ray_bench --model models/model.onnx --out reports/ray_benchmark.json

Runs, in order (one at a time, so none competes with another for the cores):
  1. `detector serve` with one inference thread (the per-replica configuration: the baseline for Ray's overhead),
  2. `detector serve` with the backend's default threads (the strongest single-process alternative),
  3. Ray Serve with 1 replica, then 2 replicas (one inference thread each), on a local Ray cluster.
Each at every `--concurrency` level: throughput and p50/p99 of `POST /predict` (benchmarks.http_bench). The
per-request overhead Ray adds is p50(Ray, 1 replica) - p50(uvicorn, 1 thread) at concurrency 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.http_bench import HttpPlan, check_service, run_http
from benchmarks.inputs import encode_jpeg, load_images
from benchmarks.machine import machine_info
from benchmarks.service import free_port, local_service
from benchmarks.stats import ratio

log = logging.getLogger("benchmarks")


def _plan(args: argparse.Namespace, url: str) -> HttpPlan:
    return HttpPlan(
        url=url,
        concurrency=args.concurrency,
        inputs=["multipart"],
        requests=args.requests,
        max_seconds=args.max_seconds,
        warmup=8,
    )


def _cells(name: str, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"server": name, **cell} for cell in cells]


def measure_uvicorn(args: argparse.Namespace, jpegs: list[bytes], threads: int) -> list[dict[str, Any]]:
    with local_service(args.model, args.backend, threads) as url:
        check_service(url)
        return _cells(f"uvicorn threads={threads or 'auto'}", run_http(_plan(args, url), jpegs))


def measure_ray(args: argparse.Namespace, jpegs: list[bytes]) -> list[dict[str, Any]]:
    # Imported here: the rest of the benchmarks run without the `ray` extra.
    from detector.config import load_config
    from serve_ray.runner import deploy, load_serve_config, ray_cluster

    port = free_port()
    config = load_config(
        [
            f"inference.model_path={args.model}",
            f"inference.backend={args.backend}",
            "inference.threads=1",
            f"inference.server.port={port}",
        ],
        config_dir=args.config_dir,
    )
    schema = load_serve_config(args.serve_config)
    url = f"http://127.0.0.1:{port}"
    cells: list[dict[str, Any]] = []
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with ray_cluster("local", num_cpus=os.cpu_count(), object_store_memory=100 * 1024**2):
        for replicas in args.replicas:
            deploy(config, schema, replicas=replicas)  # a redeploy with another count scales the same app
            check_service(url)
            cells += _cells(f"ray replicas={replicas}", run_http(_plan(args, url), jpegs))
    return cells


def summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    def p50(server: str, concurrency: int) -> float | None:
        for c in cells:
            if c["server"] == server and c["concurrency"] == concurrency and c["latency"]:
                return float(c["latency"]["p50_ms"])
        return None

    def rps(server: str, concurrency: int) -> float | None:
        for c in cells:
            if c["server"] == server and c["concurrency"] == concurrency:
                return c["throughput_rps"]  # type: ignore[no-any-return]
        return None

    base, ray1 = p50("uvicorn threads=1", 1), p50("ray replicas=1", 1)
    levels = sorted({int(c["concurrency"]) for c in cells})
    return {
        "ray_overhead_p50_ms_at_concurrency_1": round(ray1 - base, 2) if base is not None and ray1 else None,
        # A speed-up: rps(2 replicas) / rps(1 replica); ratio() divides its first argument by its second.
        "throughput_2_vs_1_replicas": {c: ratio(rps("ray replicas=2", c), rps("ray replicas=1", c)) for c in levels},
    }


def markdown(cells: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    lines = ["| server | concurrency | ok | errors | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        lat = c["latency"] or {}
        lines.append(
            f"| {c['server']} | {c['concurrency']} | {c['ok']} | {c['errors']} | {c['throughput_rps']} "
            f"| {lat.get('p50_ms', '-')} | {lat.get('p99_ms', '-')} |"
        )
    lines.append("")
    overhead = summ["ray_overhead_p50_ms_at_concurrency_1"]
    lines.append(f"Ray's per-request overhead at concurrency 1 (p50): {overhead} ms")
    lines.append(f"Throughput, 2 replicas / 1 replica, by concurrency: {summ['throughput_2_vs_1_replicas']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ray_bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    p.add_argument("--backend", default="auto")
    p.add_argument(
        "--images", type=Path, help="folder of images (default: the photos bundled with Ultralytics, else synthetic)"
    )
    p.add_argument("--config-dir", type=Path, default=Path("configs"))
    p.add_argument("--serve-config", type=Path, default=Path("deploy/ray/serve_config.yaml"))
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    p.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--requests", type=int, default=300, help="most requests per cell")
    p.add_argument("--max-seconds", type=float, default=15.0, help="longest a cell runs")
    p.add_argument("--out", type=Path, default=Path("reports/ray_benchmark.json"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request costs the client CPU
    args.model = args.model.resolve()
    images, source = load_images(args.images, limit=16)
    jpegs = [encode_jpeg(image) for image in images]
    cells = measure_uvicorn(args, jpegs, threads=1) + measure_uvicorn(args, jpegs, threads=0)
    cells += measure_ray(args, jpegs)
    summ = summary(cells)
    report = {"machine": machine_info(), "images": source, "model": str(args.model), "cells": cells, "summary": summ}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(cells, summ) + "\n")
    print(markdown(cells, summ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
