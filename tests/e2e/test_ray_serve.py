"""The service on a real local Ray cluster (2 CPUs, no dashboard, loopback): two replicas deployed from the shipped
Serve config, spoken to over HTTP through Ray's proxy. Covers: answers equal the library's, traffic over both
replicas, client errors stay 4xx, overload is the app's own 503 + Retry-After, a replica killed under load is
replaced with no failures beyond the requests in flight on it, and shutdown drains.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

import serve_ray  # noqa: F401 - first: it tells Ray (before Ray is imported) not to re-create workers with uv

pytest.importorskip("ray", reason="the `ray` extra is not installed (make install-ray)")

from ray import serve
from ray.serve.context import _get_global_client

from detector.config import Config, load_config
from detector.runtime import Detector
from detector.runtime.images import decode_image
from serve_ray.deployment import REPLICA_HEADER
from serve_ray.runner import deploy, load_serve_config, ray_cluster, shutdown_serve
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
APP, DEPLOYMENT = "detector", "DetectorDeployment"
QUEUE_SIZE = 8  # per replica: small, so the overload test needs few requests


@dataclass
class Cluster:
    url: str
    config: Config


@pytest.fixture(scope="module")
def cluster(model_path: Path) -> Iterator[Cluster]:
    port = free_port()
    config = load_config(
        [
            f"inference.model_path={model_path}",
            f"inference.server.port={port}",
            "inference.threads=1",
            f"inference.server.queue_size={QUEUE_SIZE}",
            # Full-size decoding, as the library decodes: the photos are large enough for `reduced` to decode them at
            # the model's size, which is a different (equally valid) input than the one compared against.
            "inference.server.decode_mode=exact",
            f"inference.shadow.model={model_path}",  # every replica shadows its share (its own model as challenger)
        ],
        config_dir=REPO / "configs",
    )
    started = time.perf_counter()
    with ray_cluster("local", num_cpus=2, object_store_memory=100 * 1024**2):
        deploy(config, load_serve_config(REPO / "deploy/ray/serve_config.yaml"), replicas=2)
        print(f"\nRay up and 2 replicas ready in {time.perf_counter() - started:.1f} s")
        yield Cluster(f"http://127.0.0.1:{port}", config)


def replicas() -> list[dict[str, Any]]:
    """The deployment's replicas as the Serve controller reports them (id, state, pid). Ray's public status API
    gives counts only; the pid, needed to kill one, is in the controller's instance details."""
    details = _get_global_client().get_serve_details()
    return list(details["applications"][APP]["deployments"][DEPLOYMENT]["replicas"])


def running_ids() -> set[str]:
    return {r["replica_id"] for r in replicas() if r["state"] == "RUNNING"}


def jpeg(size: tuple[int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def post(http: httpx.Client, data: bytes, query: str = "") -> httpx.Response:
    return http.post(f"/predict{query}", files={"file": ("a.jpg", data, "image/jpeg")})


def test_answers_equal_the_library(cluster: Cluster, model_path: Path, sample_photos: list[Path]) -> None:
    test_images = sorted((model_path.parents[1] / "data/v1/images/test").glob("*.jpg"))[:4]
    inf = cluster.config.inference
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        backend = http.get("/model").json()["backend"]
        with Detector.load(model_path, backend=backend, rect=inf.rect) as det:
            for path in [*sample_photos, *test_images]:
                data = path.read_bytes()
                want = det.predict(decode_image(data), conf=0.01, max_det=20).to_list()
                r = post(http, data, "?conf=0.01&max_det=20")
                assert r.status_code == 200, r.text
                got = r.json()["detections"]
                assert [d["class_id"] for d in got] == [d["class_id"] for d in want], path.name
                for g, w in zip(got, want, strict=True):
                    assert g["confidence"] == pytest.approx(w["confidence"], abs=1e-4)
                    assert g["box"] == pytest.approx(w["box"], abs=0.011)


def test_requests_spread_over_both_replicas(cluster: Cluster) -> None:
    data = jpeg((320, 240), 0)
    with httpx.Client(base_url=cluster.url, timeout=30) as http, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: post(http, data), range(24)))
        metrics = http.get("/metrics")
    assert all(r.status_code == 200 for r in responses)
    seen = Counter(r.headers[REPLICA_HEADER] for r in responses)
    assert set(seen) == running_ids() and len(seen) == 2, seen
    # /metrics is the app's own registry of the replica that answered (its id is in the header).
    assert "detector_http_requests_total" in metrics.text and metrics.headers[REPLICA_HEADER] in seen


def test_each_replica_shadows_its_share(cluster: Cluster) -> None:
    """Shadow scoring per replica: each accounts for exactly the requests it answered, scored or shed (shedding is
    by design when the idle-priority challenger gets no CPU on a loaded machine), and /model/shadow through the
    proxy is the report of whichever replica answered it. Counted from a quiet start: the earlier tests' images may
    still be waiting for the idle-priority challengers."""
    reports: dict[str, dict[str, Any]] = {}

    def offered(r: dict[str, Any]) -> int:
        return int(r["samples"]) + int(r["shed"])

    def poll(http: httpx.Client, until: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (len(reports) == 2 and until()) and time.monotonic() < deadline:
            r = http.get("/model/shadow")
            reports[r.headers[REPLICA_HEADER]] = r.json()

    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        poll(http, lambda: all(r["status"] == "running" and r["pending"] == 0 for r in reports.values()), 60)
        assert {rid: r["status"] for rid, r in reports.items()} == dict.fromkeys(running_ids(), "running")
        assert all(r["pending"] == 0 for r in reports.values())
        before = {rid: offered(r) for rid, r in reports.items()}
        scored_before = sum(r["samples"] for r in reports.values())
        sent: Counter[str] = Counter(post(http, jpeg((160, 120), 5 + i)).headers[REPLICA_HEADER] for i in range(8))

        def accounted() -> bool:
            done = all(offered(r) - before[rid] == sent[rid] and r["pending"] == 0 for rid, r in reports.items())
            return done and sum(r["samples"] for r in reports.values()) > scored_before

        poll(http, accounted, 30)
    assert {rid: offered(r) - before[rid] for rid, r in reports.items()} == {rid: sent[rid] for rid in reports}
    assert sum(r["samples"] for r in reports.values()) > scored_before  # the challengers did score
    assert all(r["match_rate"] == 1.0 and r["errors"] == 0 for r in reports.values())


def test_client_errors_stay_4xx_through_ray(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        undecodable = post(http, b"\xff\xd8 this is not a jpeg")
        bad_base64 = http.post("/predict", json={"image_base64": "***"})
        bad_param = post(http, jpeg((64, 64), 1), "?conf=2")
    for r, status in ((undecodable, 422), (bad_base64, 400), (bad_param, 422)):
        assert r.status_code == status, r.text
        assert r.json()["detail"]


def test_overload_is_the_apps_503_with_retry_after(cluster: Cluster) -> None:
    data = jpeg((4000, 3000), 2)  # decoding keeps each request busy, so admitted ones pile up
    burst = 48
    with httpx.Client(base_url=cluster.url, timeout=60, limits=httpx.Limits(max_connections=burst)) as http:
        with ThreadPoolExecutor(burst) as pool:
            responses = list(pool.map(lambda _: post(http, data), range(burst)))
        assert http.get("/health").status_code == 200
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, f"a burst of {burst} never hit the queue limit: {statuses}"
    assert all(r.headers.get("retry-after") for r in refused)
    # Refused by the app itself (its own message, from a replica), not queued without bound in front of it.
    assert any(REPLICA_HEADER in r.headers and "busy" in r.json()["detail"] for r in refused)
    print(f"\noverload burst of {burst}: {dict(statuses)}")


def test_killed_replica_is_replaced_without_failing_other_requests(cluster: Cluster) -> None:
    before = running_ids()
    assert len(before) == 2
    data = jpeg((640, 480), 3)
    clients, duration_s = 4, 8.0
    outcomes: list[tuple[float, float, int | str, str | None]] = []  # (start, end, status or error, replica)
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def client() -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            while (start := time.monotonic()) < stop_at:
                try:
                    r = post(http, data)
                    result: tuple[int | str, str | None] = (r.status_code, r.headers.get(REPLICA_HEADER))
                except httpx.TransportError as exc:
                    result = (type(exc).__name__, None)
                with lock:
                    outcomes.append((start, time.monotonic(), *result))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim = next(r for r in replicas() if r["state"] == "RUNNING")
    killed_at = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)

    failed = [o for o in outcomes if o[2] != 200]
    in_flight_at_kill = [o for o in outcomes if o[0] <= killed_at <= o[1]]
    on_survivor = [o for o in outcomes if o[3] is not None and o[3] != victim["replica_id"]]
    print(
        f"\nkill under load: {len(outcomes)} requests, {len(failed)} failed "
        f"({Counter(str(o[2]) for o in failed)}), {len(in_flight_at_kill)} in flight at the kill"
    )
    # Only requests that were on the killed replica can fail: at most the ones in flight when it died.
    assert len(failed) <= len(in_flight_at_kill), failed
    assert all(o[2] == 200 for o in on_survivor)
    assert any(o[0] > killed_at and o[2] == 200 for o in outcomes), "nothing was served after the kill"

    # Ray notices the dead actor, starts a replacement, which loads its model before it gets traffic.
    deadline = time.monotonic() + 90
    while not ((now := running_ids()) and len(now) == 2 and victim["replica_id"] not in now):
        assert time.monotonic() < deadline, f"not back to 2 healthy replicas: {replicas()}"
        time.sleep(0.5)
    print(f"back to 2 running replicas {time.monotonic() - killed_at:.1f} s after the kill")
    status = serve.status().applications[APP].deployments[DEPLOYMENT]
    assert status.status == "HEALTHY" and status.replica_states == {"RUNNING": 2}
    with httpx.Client(base_url=cluster.url, timeout=30) as http, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: post(http, data), range(24)))
    assert all(r.status_code == 200 for r in responses)
    assert {r.headers[REPLICA_HEADER] for r in responses} == now


def test_shutdown_drains_in_flight_requests(cluster: Cluster) -> None:
    data = jpeg((6000, 5000), 4)  # 30 Mpixel (under max_pixels): about a second each to decode on 2 cores
    n = 6  # under the per-replica queue limit: every one is admitted
    limits = httpx.Limits(max_connections=n)
    with httpx.Client(base_url=cluster.url, timeout=60, limits=limits) as http, ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(post, http, data) for _ in range(n)]
        time.sleep(0.3)  # they are on the replicas now
        assert not all(f.done() for f in futures), "the requests finished before the shutdown started"
        shutdown_serve()  # what the CLI does on SIGTERM; blocks until the replicas have drained and stopped
        statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * n
