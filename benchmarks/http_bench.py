"""HTTP mode: `POST /predict` of a running service at several concurrency levels, multipart and JSON bodies.

Each cell sends at most `requests` requests and stops after `max_seconds`; latency stats cover 2xx responses only,
and every non-2xx status and client-side exception is counted. Throughput = successful requests / wall time.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.errors import BenchmarkInputError
from benchmarks.stats import summarize

log = logging.getLogger("benchmarks")

INPUT_KINDS = ("multipart", "json", "raw")


@dataclass(frozen=True)
class HttpPlan:
    url: str
    concurrency: list[int]
    inputs: list[str]
    requests: int = 100
    max_seconds: float = 10.0
    warmup: int = 3
    timeout_s: float = 30.0


def check_service(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """`GET /health` then `GET /model`; BenchmarkInputError when the service is unreachable or not ready."""
    base = url.rstrip("/")
    try:
        health = httpx.get(f"{base}/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise BenchmarkInputError(f"cannot reach the service at {base}: {type(exc).__name__}: {exc}") from exc
    if health.status_code != 200:
        raise BenchmarkInputError(f"service at {base} is not ready: GET /health answered {health.status_code}")
    try:
        model = httpx.get(f"{base}/model", timeout=timeout_s)
        return dict(model.json()) if model.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}  # /model is informative only; the benchmark itself needs just /predict


def _request_kwargs(kind: str, jpegs: list[bytes]) -> list[dict[str, Any]]:
    """Ready-made request bodies (encoding is not part of what the service is timed on)."""
    if kind == "multipart":
        return [{"files": {"file": ("image.jpg", data, "image/jpeg")}} for data in jpegs]
    if kind == "json":
        return [{"json": {"image_base64": base64.b64encode(data).decode("ascii")}} for data in jpegs]
    if kind == "raw":  # the JPEG as the body
        return [{"content": data, "headers": {"Content-Type": "image/jpeg"}} for data in jpegs]
    raise BenchmarkInputError(f"unknown input kind {kind!r}; choose from: {', '.join(INPUT_KINDS)}")


def run_cell(
    client: httpx.Client, url: str, bodies: list[dict[str, Any]], concurrency: int, plan: HttpPlan
) -> dict[str, Any]:
    """`concurrency` threads sending requests until `plan.requests` are sent or `plan.max_seconds` pass."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    exceptions: Counter[str] = Counter()
    lock = threading.Lock()
    sent = 0
    deadline = time.perf_counter() + plan.max_seconds

    def worker() -> None:
        nonlocal sent
        while True:
            with lock:
                if sent >= plan.requests or time.perf_counter() >= deadline:
                    return
                index = sent
                sent += 1
            t0 = time.perf_counter()
            try:
                response = client.post(url, **bodies[index % len(bodies)])
            except httpx.HTTPError as exc:
                with lock:
                    exceptions[type(exc).__name__] += 1
                continue
            elapsed = (time.perf_counter() - t0) * 1e3
            with lock:
                if 200 <= response.status_code < 300:
                    latencies.append(elapsed)
                else:
                    statuses[str(response.status_code)] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - start
    cell: dict[str, Any] = {
        "sent": sent,
        "ok": len(latencies),
        "non_2xx": dict(statuses),
        "exceptions": dict(exceptions),
        "errors": sum(statuses.values()) + sum(exceptions.values()),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 3) if wall > 0 else None,
        "latency": summarize(latencies) if latencies else None,
        "error": None,
    }
    if not latencies:
        cell["error"] = f"all {sent} requests failed: statuses {dict(statuses)}, exceptions {dict(exceptions)}"
    return cell


def run_http(plan: HttpPlan, jpegs: list[bytes]) -> list[dict[str, Any]]:
    """One cell per (input kind, concurrency level)."""
    url = plan.url.rstrip("/") + "/predict"
    cells: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=max(plan.concurrency), max_keepalive_connections=max(plan.concurrency))
    with httpx.Client(timeout=plan.timeout_s, limits=limits) as client:
        for kind in plan.inputs:
            bodies = _request_kwargs(kind, jpegs)
            for i in range(plan.warmup):  # first requests pay connection setup and the server's lazy paths
                with contextlib.suppress(httpx.HTTPError):  # counted in the timed cells if it persists
                    client.post(url, **bodies[i % len(bodies)])
            for concurrency in plan.concurrency:
                log.info("HTTP %s, concurrency %d", kind, concurrency)
                cell = {"input": kind, "concurrency": concurrency, **run_cell(client, url, bodies, concurrency, plan)}
                cells.append(cell)
    return cells
