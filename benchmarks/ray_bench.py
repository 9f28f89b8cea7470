"""The service on Ray Serve vs `detector serve` (uvicorn): same model, same images, same machine, one run.

    uv run python -m benchmarks.ray_bench --model models/model.onnx --out reports/ray_benchmark.json

Four servers run side by side and are measured in interleaved rounds (every round: each server at each
`--concurrency` level for a short cell), so background load drifting on a shared machine hits all of them alike:
  * `detector serve` with one inference thread: the per-replica configuration, the baseline for Ray's overhead;
  * `detector serve` with the backend's default threads: the strongest single-process alternative;
  * Ray Serve, 1 replica and 2 replicas (one inference thread each): two applications on one local Ray cluster,
    behind the same proxy (`/r1`, `/r2`).
Only the server being measured has traffic; the others idle. Per (server, concurrency): throughput (successful
requests / wall time, summed over rounds) and p50/p99 over all rounds' latencies. Ray's per-request overhead is
p50(Ray, 1 replica) - p50(uvicorn, 1 thread) at concurrency 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.http_bench import check_service
from benchmarks.inputs import encode_jpeg, load_images
from benchmarks.machine import machine_info
from benchmarks.service import free_port, local_service
from benchmarks.stats import ratio, summarize

log = logging.getLogger("benchmarks")

UVICORN_1, UVICORN_AUTO, RAY_1, RAY_2 = "uvicorn threads=1", "uvicorn threads=auto", "ray replicas=1", "ray replicas=2"


@contextmanager
def ray_servers(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """One local Ray cluster with the app deployed twice: 1 replica at /r1, 2 replicas at /r2."""
    # Imported here: the other benchmarks run without the `ray` extra.
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
    # 3 logical CPUs for 3 one-CPU replicas: they share the machine's cores, and only one app is loaded at a time.
    with ray_cluster("local", num_cpus=3, object_store_memory=100 * 1024**2):
        deploy(config, schema, replicas=1, name="r1", route_prefix="/r1")
        deploy(config, schema, replicas=2, name="r2", route_prefix="/r2")
        yield {RAY_1: f"http://127.0.0.1:{port}/r1", RAY_2: f"http://127.0.0.1:{port}/r2"}


def run_cell(
    client: httpx.Client, url: str, bodies: list[bytes], concurrency: int, requests: int, max_seconds: float
) -> tuple[list[float], float, Counter[str]]:
    """`concurrency` threads posting until `requests` are sent or `max_seconds` pass: (latencies ms, wall s, errors).
    Like benchmarks.http_bench.run_cell, but returns the raw latencies so rounds can be pooled."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    sent = 0
    deadline = time.perf_counter() + max_seconds

    def worker() -> None:
        nonlocal sent
        while True:
            with lock:
                if sent >= requests or time.perf_counter() >= deadline:
                    return
                body = bodies[sent % len(bodies)]
                sent += 1
            t0 = time.perf_counter()
            try:
                r = client.post(url, files={"file": ("image.jpg", body, "image/jpeg")})
                outcome = "ok" if r.status_code == 200 else str(r.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            elapsed = (time.perf_counter() - t0) * 1e3
            with lock:
                if outcome == "ok":
                    latencies.append(elapsed)
                else:
                    errors[outcome] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, time.perf_counter() - start, errors


def measure(args: argparse.Namespace, servers: dict[str, str], jpegs: list[bytes]) -> list[dict[str, Any]]:
    pooled: dict[tuple[str, int], tuple[list[float], list[float], Counter[str]]] = {
        (name, c): ([], [], Counter()) for name in servers for c in args.concurrency
    }
    limits = httpx.Limits(max_connections=max(args.concurrency), max_keepalive_connections=max(args.concurrency))
    with httpx.Client(timeout=60, limits=limits) as client:
        for url in servers.values():  # warm-up: connections, the servers' lazy paths
            run_cell(client, url + "/predict", jpegs, 2, 10, 10)
        for round_ in range(args.rounds):
            log.info("round %d/%d", round_ + 1, args.rounds)
            for name, url in servers.items():
                for c in args.concurrency:
                    lat, wall, errors = run_cell(client, url + "/predict", jpegs, c, args.requests, args.max_seconds)
                    all_lat, walls, all_errors = pooled[(name, c)]
                    all_lat += lat
                    walls.append(wall)
                    all_errors.update(errors)
    cells = []
    for (name, c), (lat, walls, errors) in pooled.items():
        cells.append(
            {
                "server": name,
                "concurrency": c,
                "ok": len(lat),
                "errors": dict(errors),
                "wall_s": round(sum(walls), 3),
                "throughput_rps": round(len(lat) / sum(walls), 3) if sum(walls) > 0 else None,
                "latency": summarize(lat) if lat else None,
            }
        )
    return cells


def summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    def get(server: str, c: int, key: str) -> float | None:
        for cell in cells:
            if cell["server"] == server and cell["concurrency"] == c and cell["latency"]:
                return float(cell["latency"]["p50_ms"] if key == "p50" else cell["throughput_rps"])
        return None

    base, ray1 = get(UVICORN_1, 1, "p50"), get(RAY_1, 1, "p50")
    overhead = round(ray1 - base, 2) if base is not None and ray1 is not None else None
    levels = sorted({int(cell["concurrency"]) for cell in cells})
    return {
        "ray_overhead_p50_ms_at_concurrency_1": overhead,
        # Speed-ups: ratio(a, b) = a / b.
        "throughput_ray2_over_ray1": {c: ratio(get(RAY_2, c, "rps"), get(RAY_1, c, "rps")) for c in levels},
        "throughput_ray2_over_uvicorn_auto": {
            c: ratio(get(RAY_2, c, "rps"), get(UVICORN_AUTO, c, "rps")) for c in levels
        },
    }


def markdown(cells: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    lines = ["| server | concurrency | ok | errors | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for c in sorted(cells, key=lambda cell: (cell["concurrency"], cell["server"])):
        lat = c["latency"] or {}
        p50, p99 = (f"{lat[k]:.1f}" if k in lat else "-" for k in ("p50_ms", "p99_ms"))
        lines.append(
            f"| {c['server']} | {c['concurrency']} | {c['ok']} | {sum(c['errors'].values())} | {c['throughput_rps']} "
            f"| {p50} | {p99} |"
        )
    lines += [
        "",
        f"Ray's per-request overhead at concurrency 1 (p50): {summ['ray_overhead_p50_ms_at_concurrency_1']} ms",
        f"Throughput, Ray 2 replicas / 1 replica: {summ['throughput_ray2_over_ray1']}",
        f"Throughput, Ray 2 replicas / uvicorn (default threads): {summ['throughput_ray2_over_uvicorn_auto']}",
    ]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ray_bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    p.add_argument("--backend", default="auto")
    p.add_argument(
        "--images", type=Path, help="folder of images (default: the photos bundled with Ultralytics, else synthetic)"
    )
    p.add_argument("--config-dir", type=Path, default=Path("configs"))
    p.add_argument("--serve-config", type=Path, default=Path("deploy/ray/serve_config.yaml"))
    p.add_argument("--concurrency", type=_ints, default=[1, 4, 8])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--requests", type=int, default=40, help="most requests per cell and round")
    p.add_argument("--max-seconds", type=float, default=4.0, help="longest a cell runs per round")
    p.add_argument("--out", type=Path, default=Path("reports/ray_benchmark.json"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request costs the client CPU
    args.model = args.model.resolve()
    images, source = load_images(args.images, limit=16)
    jpegs = [encode_jpeg(image) for image in images]
    load_before = os.getloadavg()
    with ExitStack() as stack:
        servers = {
            UVICORN_1: stack.enter_context(local_service(args.model, args.backend, 1)),
            UVICORN_AUTO: stack.enter_context(local_service(args.model, args.backend, 0)),
            **stack.enter_context(ray_servers(args)),
        }
        backends = {name: check_service(url).get("backend") for name, url in servers.items()}
        cells = measure(args, servers, jpegs)
    summ = summary(cells)
    report = {
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "images": source,
        "model": str(args.model),
        "backends": backends,
        "cells": cells,
        "summary": summ,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(cells, summ) + "\n")
    print(markdown(cells, summ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
