"""Micro-batching under concurrency, and backpressure under overload."""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from api.model.slot import DetectorLike
from api.service import DetectorFactory, default_detector_factory
from detector.config import Config
from detector.runtime import Detections
from tests.fakes import PassThrough


def post_file(client: TestClient, data: bytes, query: str = "") -> Any:
    return client.post(f"/predict{query}", files={"file": ("x.jpg", data, "image/jpeg")})


def batch_sizes(metrics_text: str) -> dict[str, float]:
    """`le` bucket -> cumulative count of the batch-size histogram."""
    found = re.findall(r'detector_batch_size_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics_text)
    return {le: float(n) for le, n in found}


def test_concurrent_requests_share_batches_and_match_sequential(
    make_config: Any, run_app: Any, dataset_dir: Path
) -> None:
    # A generous wait window so that batches form even on a slow, busy CI machine; batching forced on (a CPU model
    # runs one image per call by default).
    config = make_config(
        "inference.server.max_wait_ms=20",
        "inference.server.max_batch=8",
        "inference.server.workers=2",
        "inference.server.micro_batching=always",
    )
    images = [p.read_bytes() for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:32]]
    with run_app(config) as client:
        # Half the requests use other thresholds: they must be batched only with their own kind.
        queries = ["?conf=0.05", "?conf=0.05&max_det=2"]
        jobs = [(img, queries[i % 2]) for i, img in enumerate(images * 2)]  # 64 requests
        sequential = [post_file(client, img, q).json()["detections"] for img, q in jobs]
        before = batch_sizes(client.get("/metrics").text)

        start = threading.Barrier(64)

        def one(job: tuple[bytes, str]) -> Any:
            start.wait()  # all 64 in flight together
            return post_file(client, *job)

        with ThreadPoolExecutor(64) as pool:
            responses = list(pool.map(one, jobs))
        after = batch_sizes(client.get("/metrics").text)

    assert [r.status_code for r in responses] == [200] * 64
    for r, want, (_, q) in zip(responses, sequential, jobs, strict=True):
        got = r.json()["detections"]
        assert [d["class_id"] for d in got] == [d["class_id"] for d in want]
        for g, w in zip(got, want, strict=True):
            assert abs(g["confidence"] - w["confidence"]) < 2e-3  # batched kernels may round differently
            assert all(abs(g["box"][k] - w["box"][k]) < 0.05 for k in g["box"])
        if "max_det=2" in q:
            assert len(got) <= 2
    # Sequential requests each ran alone; concurrently, at least one backend call held several images.
    assert before["1.0"] == before["+Inf"] == 64
    batched_calls = (after["+Inf"] - after["1.0"]) - (before["+Inf"] - before["1.0"])
    assert batched_calls >= 1
    assert max(int(r.headers["X-Batch-Size"]) for r in responses) > 1


def test_a_cpu_model_runs_one_image_per_call_by_default(make_config: Any, run_app: Any, dataset_dir: Path) -> None:
    images = [p.read_bytes() for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:16]]
    with run_app(make_config("inference.server.max_wait_ms=20")) as client:
        assert client.get("/model").json()["max_batch"] == 1
        start = threading.Barrier(16)

        def one(data: bytes) -> Any:
            start.wait()
            return post_file(client, data)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(one, images))
        metrics = batch_sizes(client.get("/metrics").text)
    assert [r.status_code for r in responses] == [200] * 16
    assert {r.headers["X-Batch-Size"] for r in responses} == {"1"}
    assert metrics["1.0"] == metrics["+Inf"]


class SlowDetector(PassThrough):
    """The real detector, made slow: lets a test fill the queue deterministically."""

    def __init__(self, inner: DetectorLike, delay_s: float) -> None:
        super().__init__(inner)
        self.delay_s = delay_s

    def predict_batch(self, images: Sequence[npt.NDArray[np.uint8]], *args: Any, **kwargs: Any) -> list[Detections]:
        time.sleep(self.delay_s)
        return super().predict_batch(images, *args, **kwargs)


def slow_factory(config: Config, delay_s: float) -> DetectorFactory:
    real = default_detector_factory(config)
    return lambda path, backend: SlowDetector(real(path, backend), delay_s)


@pytest.mark.alone
def test_overload_gets_fast_503_with_retry_after_while_health_answers(
    make_config: Any, run_app: Any, dataset_dir: Path
) -> None:
    config = make_config(
        "inference.server.queue_size=2",
        "inference.server.max_batch=1",
        "inference.server.workers=1",
        "inference.server.max_wait_ms=0",
    )
    data = next((dataset_dir / "images" / "val").glob("*.jpg")).read_bytes()
    with run_app(config, slow_factory(config, delay_s=0.25)) as client:
        timings: list[tuple[int, float, str | None]] = []
        health: list[tuple[int, float]] = []
        stop = threading.Event()

        def request(_: int) -> None:
            t0 = time.perf_counter()
            r = post_file(client, data)
            timings.append((r.status_code, time.perf_counter() - t0, r.headers.get("Retry-After")))
            if r.status_code == 503:
                assert "busy" in r.json()["detail"]

        def poll_health() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                code = client.get("/health").status_code
                health.append((code, time.perf_counter() - t0))
                time.sleep(0.02)

        poller = threading.Thread(target=poll_health)
        # A full collection of the whole test session's heap stalled one client thread for half a second once (a 503
        # timed at 0.55 s in a CI run of the whole suite; never alone): not the server's doing, so none runs here.
        gc.collect()
        gc.disable()
        try:
            poller.start()
            with ThreadPoolExecutor(12) as pool:
                list(pool.map(request, range(12)))
            stop.set()
            poller.join()
        finally:
            gc.enable()
        rejected = client.get("/metrics").text

    ok = [t for t in timings if t[0] == 200]
    busy = [t for t in timings if t[0] == 503]
    assert len(ok) + len(busy) == 12, timings
    # At most two wait in the queue (plus one in the worker, once it has picked one up): most of 12 must overflow.
    assert len(ok) >= 2 and len(busy) >= 6, timings
    assert all(retry == "1" for _, _, retry in busy)
    busy_latency = sorted(t for _, t, _ in busy)
    # Median 503 well under one inference: refused at admission, not after waiting (headroom for a loaded CI box).
    assert busy_latency[len(busy_latency) // 2] < 0.15, busy_latency
    # All but one under one inference (0.25 s): refusals that waited for inference would be most of them. One may
    # lose the GIL among this test's 13 threads on a loaded 2-core box.
    assert busy_latency[-2] < 0.25 and busy_latency[-1] < 1.0, busy_latency
    assert health and all(code == 200 for code, _ in health)
    assert max(t for _, t in health) < 0.25, health  # health never waits for the model
    assert re.search(r'detector_rejected_requests_total\{reason="queue_full"\} ([1-9][0-9]*)', rejected)
