"""What shadow scoring costs the served path: `/predict` p50 at concurrency 1 with `inference.shadow` off and on.

Two `detector serve` processes run side by side on the same model: one without a challenger, one with
`inference.shadow.model=CHALLENGER` and `sample=1.0` (every request is also scored). Rounds alternate between
them (off, on, on, off, ...) so a slow stretch of a shared machine hits both, and each round is the project's
HTTP benchmark cell (`benchmarks.http_bench.run_cell`) at concurrency 1. Prints JSON: the machine, the p50 of each
side over all rounds, their ratio, and what the shadow server's `GET /model/shadow` says it scored (so a run where
the challenger never ran cannot pass for a cheap one).

    python -m benchmarks.shadow_overhead --model models/model.onnx [--challenger models/model.int8.onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.http_bench import HttpPlan, _request_kwargs, run_cell
from benchmarks.inputs import encode_jpeg, load_images
from benchmarks.machine import machine_info
from benchmarks.service import free_port, http_server


@contextmanager
def _service(model: Path, backend: str, shadow: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **{f"DETECTOR_INFERENCE__SHADOW__{k.upper()}": v for k, v in shadow.items()}}
    cmd = [sys.executable, "-m", "cli", "serve", "--model", str(model), "--backend", backend]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with http_server(cmd, env, port, "the service") as url:
        yield url


def _wait_running(url: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = dict(httpx.get(f"{url}/model/shadow", timeout=5).json())
        if body["status"] != "loading" or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def measure(
    model: Path, challenger: Path, backend: str, rounds: int, requests: int, images: Path | None
) -> dict[str, Any]:
    pictures, source = load_images(images)
    bodies = _request_kwargs("multipart", [encode_jpeg(p) for p in pictures])
    plan = HttpPlan(url="", concurrency=[1], inputs=["multipart"], requests=requests, max_seconds=600.0)
    round_p50: dict[str, list[float]] = {"off": [], "on": []}
    errors = {"off": 0, "on": 0}
    with ExitStack() as stack, httpx.Client(timeout=30) as client:
        urls = {
            "off": stack.enter_context(_service(model, backend, {})),
            "on": stack.enter_context(_service(model, backend, {"model": str(challenger), "sample": "1.0"})),
        }
        shadow = _wait_running(urls["on"])
        if shadow["status"] != "running":
            raise SystemExit(f"the challenger is not running: {shadow['status']} ({shadow.get('detail')})")
        for url in urls.values():  # warm-up: connections, lazy paths, the challenger's first shapes
            for body in bodies * 3:
                client.post(f"{url}/predict", **body)
        for r in range(rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for side in order:
                cell = run_cell(client, f"{urls[side]}/predict", bodies, 1, plan)
                errors[side] += cell["errors"]
                round_p50[side].append(cell["latency"]["p50_ms"])
        time.sleep(1.0)  # let the challenger finish the last image
        shadow = httpx.get(f"{urls['on']}/model/shadow", timeout=5).json()
    # The median of the rounds' p50s: one noisy round (another process on a shared machine) moves it little.
    p50_off = statistics.median(round_p50["off"])
    p50_on = statistics.median(round_p50["on"])
    return {
        "machine": machine_info(),
        "settings": {
            "model": model.name,
            "challenger": challenger.name,
            "backend": backend,
            "concurrency": 1,
            "rounds": rounds,
            "requests_per_round": requests,
            "images": source,
            "sample": 1.0,
        },
        "p50_ms": {"shadow_off": round(p50_off, 3), "shadow_on": round(p50_on, 3)},
        "round_p50_ms": {k: [round(v, 3) for v in vals] for k, vals in round_p50.items()},
        "overhead": round(p50_on / p50_off - 1.0, 4),
        "failed_requests": errors,
        "shadow": {k: shadow[k] for k in ("status", "samples", "shed", "errors", "match_rate", "latency_ms")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--challenger", type=Path, help="default: the served model itself")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per side")
    parser.add_argument("--requests", type=int, default=50, help="requests per round")
    parser.add_argument("--images", type=Path, help="an image folder (default: Ultralytics' two photos)")
    args = parser.parse_args(argv)
    result = measure(args.model, args.challenger or args.model, args.backend, args.rounds, args.requests, args.images)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
