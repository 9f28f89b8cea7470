"""What shadow scoring, drift monitoring, the inbox and tracing cost the served path: `/predict` p50 at concurrency
1, off and on.

Two `detector serve` processes run side by side on the same model. `--feature shadow` (the default): one without a
challenger, one with `inference.shadow.model=CHALLENGER` and `sample=1.0` (every request is also scored).
`--feature drift`: `inference.drift.enabled` false vs true (the model must carry a reference profile, as the
pipeline's export writes). `--feature inbox`: `inference.inbox` off vs on with the widest confidence band (every
image with a box is written: the worst case; `--inbox-conf-band` sets another), into a temporary folder.
`--feature tracing`: `inference.tracing` off vs on, exporting to a loopback sink. `--feature monitoring`: drift, the
inbox and tracing off vs on (what watches a deployed model; the golden-image check runs on both sides, every 5
minutes). `--feature all`: those three and the shadow off vs on. Rounds alternate between them (off, on, on, off,
...) so a slow stretch of a shared machine hits both, and each round is the project's HTTP benchmark cell
(`benchmarks.http_bench.run_cell`) at concurrency 1. Prints JSON: the machine, the p50 of each side over all
rounds, their ratio, what the shadow server's `GET /model/shadow` says it scored, how many images the inbox wrote
and how many span exports arrived (so a run where the feature never ran cannot pass for a cheap one).

    python -m benchmarks.shadow_overhead --model models/model.onnx [--challenger models/model.int8.onnx]
        [--feature shadow|drift|inbox|tracing|monitoring|all]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.http_bench import HttpPlan, _request_kwargs, run_cell
from benchmarks.inputs import encode_jpeg, load_images
from benchmarks.machine import machine_info
from benchmarks.service import free_port, http_server


@contextmanager
def _trace_sink() -> Iterator[tuple[str, list[int]]]:
    """A loopback OTLP/HTTP endpoint that accepts and drops spans (what a collector costs is not the service's); the
    number of exports it received, so a run where tracing never exported cannot pass for a cheap one."""
    received = [0]

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()


@contextmanager
def _service(model: Path, backend: str, settings: dict[str, str]) -> Iterator[str]:
    """`settings`: inference keys as `section__key` (e.g. `shadow__model`), passed as DETECTOR_INFERENCE__* vars."""
    port = free_port()
    env = {**os.environ, **{f"DETECTOR_INFERENCE__{k.upper()}": v for k, v in settings.items()}}
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


def sides(
    feature: str,
    challenger: Path,
    inbox_dir: Path,
    inbox_band: str = "[0,1]",
    traces_url: str = "",
    trace_sample: float = 1.0,
) -> dict[str, dict[str, str]]:
    """The settings of the "off" and "on" servers for `feature`."""
    shadow = {"shadow__model": str(challenger), "shadow__sample": "1.0"}
    drift_off = {"drift__enabled": "false"}
    inbox = {"inbox__enabled": "true", "inbox__dir": str(inbox_dir), "inbox__conf_band": inbox_band}
    tracing = {"tracing__enabled": "true", "tracing__endpoint": traces_url, "tracing__sample": str(trace_sample)}
    return {
        "shadow": {"off": {}, "on": shadow},
        "drift": {"off": drift_off, "on": {}},
        "inbox": {"off": {}, "on": inbox},
        "tracing": {"off": {}, "on": tracing},
        "monitoring": {"off": drift_off, "on": inbox | tracing},
        "all": {"off": drift_off, "on": shadow | inbox | tracing},
    }[feature]


def measure(
    model: Path,
    challenger: Path,
    backend: str,
    rounds: int,
    requests: int,
    images: Path | None,
    feature: str = "shadow",
    inbox_band: str = "[0,1]",
    trace_sample: float = 1.0,
) -> dict[str, Any]:
    pictures, source = load_images(images)
    bodies = _request_kwargs("multipart", [encode_jpeg(p) for p in pictures])
    plan = HttpPlan(url="", concurrency=[1], inputs=["multipart"], requests=requests, max_seconds=600.0)
    round_p50: dict[str, list[float]] = {"off": [], "on": []}
    errors = {"off": 0, "on": 0}
    with ExitStack() as stack, httpx.Client(timeout=30) as client:
        inbox_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inbox-bench-")))
        traces_url, spans_received = stack.enter_context(_trace_sink())
        settings = sides(feature, challenger, inbox_dir, inbox_band, traces_url, trace_sample)
        urls = {side: stack.enter_context(_service(model, backend, settings[side])) for side in ("off", "on")}
        shadow = _wait_running(urls["on"])
        if feature in ("shadow", "all") and shadow["status"] != "running":
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
        drift_images = {side: _metric(client, url, "detector_drift_window_images") for side, url in urls.items()}
        kept = sum(1 for _ in (inbox_dir / "images").glob("*")) if (inbox_dir / "images").is_dir() else 0
    if feature in ("drift", "monitoring", "all") and not drift_images["on"]:
        raise SystemExit(
            f"{model} carries no reference profile: drift monitoring never ran (export it with the pipeline)"
        )
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
        "feature": feature,
        "p50_ms": {"off": round(p50_off, 3), "on": round(p50_on, 3)},
        "round_p50_ms": {k: [round(v, 3) for v in vals] for k, vals in round_p50.items()},
        "overhead": round(p50_on / p50_off - 1.0, 4),
        "failed_requests": errors,
        "shadow": {k: shadow[k] for k in ("status", "samples", "shed", "errors", "match_rate", "latency_ms")},
        "drift_window_images": drift_images,
        "inbox": {"conf_band": inbox_band, "images_written": kept},
        "tracing": {"sample": trace_sample, "otlp_posts_received": spans_received[0]},
    }


def _metric(client: httpx.Client, url: str, name: str) -> int:
    """An unlabelled metric of the server (detector_drift_window_images: 0 when drift monitoring is off or the model
    has no profile)."""
    for line in client.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return int(float(line.split()[1]))
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--challenger", type=Path, help="default: the served model itself")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per side")
    parser.add_argument("--requests", type=int, default=50, help="requests per round")
    parser.add_argument("--images", type=Path, help="an image folder (default: Ultralytics' two photos)")
    parser.add_argument(
        "--feature",
        choices=("shadow", "drift", "inbox", "tracing", "monitoring", "all"),
        default="shadow",
        help="what the on side adds",
    )
    parser.add_argument(
        "--inbox-conf-band",
        default="[0,1]",
        help="inference.inbox.conf_band of the on side (default [0,1]: every image with a box is written)",
    )
    parser.add_argument("--trace-sample", type=float, default=1.0, help="inference.tracing.sample of the on side")
    args = parser.parse_args(argv)
    challenger = args.challenger or args.model
    result = measure(
        args.model,
        challenger,
        args.backend,
        args.rounds,
        args.requests,
        args.images,
        args.feature,
        args.inbox_conf_band,
        args.trace_sample,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
