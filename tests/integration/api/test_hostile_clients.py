"""Issue 13's table, row by row, against a REAL `detector serve` (uvicorn subprocess on 127.0.0.1, the quick model).

Counts are smaller than the issue's where a smaller one still proves the point on a loaded 2-core CI machine:
40 slow uploaders (issue: 80; the limit they would hit is max_uploads=256, the queue they used to fill is 64),
a 50-client disconnect storm (issue: 100). The 256-request burst, the 64-request mixed-shape run, the four bombs and
the 1 MB header are as in the issue. The read timeout is 3 s here (default 20 s) so that the test waits less.
The probes themselves live in benchmarks/hostile_clients.py (the same code prints the before/after table).
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks import hostile_clients as probe
from tests.clips import write_moving_clip
from tests.servers import Server, serving

READ_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "DETECTOR_INFERENCE__SERVER__READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "DETECTOR_INFERENCE__SERVER__MAX_WAIT_MS": "10",  # batches form even on a slow, busy machine
        "DETECTOR_INFERENCE__SERVER__MICRO_BATCHING": "always",  # a CPU model runs one image per call by default
    }
    with serving(model_path, tmp_path_factory.mktemp("hostile"), env=env) as srv:
        yield srv


def predict_statuses(server: Server) -> dict[str, float]:
    return probe.statuses(httpx.get(server.url + "/metrics").text)


def test_slow_uploaders_do_not_starve_normal_clients(server: Server) -> None:
    normal = probe.photo(320, 240, seed=1, fmt="PNG")
    started = time.monotonic()
    with probe.slow_uploaders(server.url, 40) as slow:
        time.sleep(0.5)  # all 40 are trickling now
        served = probe.timed_predicts(server.url, normal, 8)
        health = httpx.get(server.url + "/health", timeout=5)
        time.sleep(max(0.0, READ_TIMEOUT_S + 1 - (time.monotonic() - started)))
    assert [code for code, _ in served] == [200] * 8, served
    assert max(t for _, t in served) < 2.0, served  # served normally, not after the slow ones give up
    assert health.status_code == 200
    # Each slow body missed the read timeout: 408, and the server closed the connection.
    assert slow.opened == 40
    assert all(a.startswith("HTTP/1.1 408") for a in slow.answers), slow.answers
    assert all(slow.closed), slow.closed


@pytest.mark.parametrize("video", [False, True], ids=["image", "clip"])
def test_slow_raw_bodies_get_408_at_the_deadline(server: Server, video: bool, tmp_path: Path) -> None:
    # The image (or clip) as the body (Content-Type: image/jpeg, video/mp4) is read by the same guarded `receive` as
    # a form; a clip's first bytes, which name its container, trickle in too.
    clients = 2 if video else 4  # clips: as many as the video job places (max_video_jobs), which they hold
    with probe.slow_uploaders(server.url, clients, raw=True, video=video) as slow:
        time.sleep(READ_TIMEOUT_S + 1)
    assert slow.opened == clients
    assert all(a.startswith("HTTP/1.1 408") for a in slow.answers), slow.answers
    assert all(slow.closed), slow.closed
    if video:  # their places are back: a clip sent the same way streams
        clip = write_moving_clip(np.full((64, 64, 3), 90, np.uint8), tmp_path / "clip.mp4", 6).read_bytes()
        r = httpx.post(server.url + "/predict/video", content=clip, headers={"content-type": "video/mp4"}, timeout=60)
        assert r.status_code == 200 and len(r.text.splitlines()) == 6, r.text


def test_concurrent_mixed_shapes_equal_sequential(server: Server) -> None:
    shapes = [(128, 128), (160, 96), (96, 160), (200, 120), (120, 200), (256, 144), (144, 256), (300, 100)]
    images = [probe.photo(w, h, seed=i, fmt="PNG") for i in range(8) for w, h in shapes]
    differ, batch_sizes = probe.mixed_shapes(server.url, images)
    assert differ == 0  # exactly equal: the same boxes, scores and classes, to the last digit
    assert max(batch_sizes) > 1, batch_sizes  # images of one shape still share backend calls


def test_jpeg_bomb_is_refused_without_memory_growth(server: Server) -> None:
    bomb = probe.jpeg_bomb(6000)
    assert len(bomb) < 2000
    growth_mb, codes = probe.growth_mb(server.url, server.proc.pid, bomb, 4, "bomb.jpg")
    assert codes == [422] * 4, codes
    r = httpx.post(server.url + "/predict", files={"file": ("bomb.jpg", bomb, "image/jpeg")})
    assert "corrupt or truncated" in r.json()["detail"]
    assert growth_mb < 60, growth_mb  # before: ~1.1 GB (four 108 MB canvases filled with grey, and their copies)


def test_16bit_png_bomb_is_decoded_within_bounded_memory(server: Server) -> None:
    png = probe.png16(6300)
    assert len(png) < 200_000
    growth_mb, codes = probe.growth_mb(server.url, server.proc.pid, png, 4, "big.png")
    assert codes == [200] * 4, codes
    # One 39.7-megapixel image fits the default 48-megapixel budget at a time: ~200 MB (2 B/px 16-bit canvas and
    # the 3 B/px RGB result), where four float64 conversions at once took ~1.7 GB.
    assert growth_mb < 400, growth_mb


def test_disconnect_storm_is_counted_as_499_without_errors(server: Server) -> None:
    before = predict_statuses(server)
    probe.disconnect_storm(server.url, 50)
    deadline = time.monotonic() + 10
    while (delta := predict_statuses(server).get("499", 0) - before.get("499", 0)) < 50:
        assert time.monotonic() < deadline, predict_statuses(server)
        time.sleep(0.1)
    after = predict_statuses(server)
    assert delta == 50
    assert not [s for s in after if s.startswith("5") and after[s] != before.get(s, 0)], after
    log = server.log.read_text()
    assert "Traceback" not in log and not re.search(r"^ERROR", log, re.MULTILINE), log[-3000:]


def test_oversized_header_is_a_4xx(server: Server) -> None:
    line = probe.header_bomb(server.url, 1_000_000)
    assert re.match(r"HTTP/1\.1 4\d\d", line), line
    assert httpx.get(server.url + "/health").status_code == 200


def test_mpo_photo_is_read_as_its_first_frame(server: Server) -> None:
    first = probe.photo(800, 600, seed=3)
    mpo = probe.mpo_photo(first)
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    as_mpo = httpx.post(server.url + "/predict?conf=0.05", files={"file": ("a.jpg", mpo, "image/jpeg")})
    assert as_mpo.status_code == 200, as_mpo.text
    assert as_mpo.json()["image"] == {"width": 800, "height": 600}
    # Its first frame, cut out as a plain JPEG (up to the first EOI marker), gives exactly the same answer.
    frame0 = mpo[: mpo.index(b"\xff\xd9") + 2]
    alone = httpx.post(server.url + "/predict?conf=0.05", files={"file": ("a.jpg", frame0, "image/jpeg")})
    assert alone.status_code == 200
    assert as_mpo.json()["detections"] == alone.json()["detections"]


@pytest.mark.alone
def test_health_stays_fast_during_a_burst_of_1080p_uploads(server: Server, tmp_path: Path) -> None:
    image = tmp_path / "1080p.jpg"
    image.write_bytes(probe.photo(1920, 1080, seed=4))
    latencies, answers = probe.health_during_burst(server.url, image, 256)
    assert len(answers) == 256
    odd = [a for a in answers if not (a[0] == 200 or (a[0] == 503 and a[1]))]
    assert not odd, odd  # served, or 503 + Retry-After
    assert sum(a[0] == 200 for a in answers) >= 64, answers
    assert len(latencies) >= 10
    p99 = probe.p99(latencies)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if p99 >= 250 and load > 2:
        # Other jobs own the CPU (a shared dev machine, load per core > 2): a latency says nothing about us then.
        pytest.skip(f"/health p99 {p99:.0f} ms with load {load:.1f} per core: the machine is overloaded")
    assert p99 < 250, sorted(latencies)[-10:]


def test_big_jpeg_is_decoded_reduced_with_boxes_in_sent_pixels(server: Server) -> None:
    big = probe.photo(4000, 3000, seed=5)
    r = httpx.post(server.url + "/predict?conf=0.01", files={"file": ("big.jpg", big, "image/jpeg")}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 4000, "height": 3000}
    for d in body["detections"]:
        assert 0 <= d["box"]["x1"] <= d["box"]["x2"] <= 4000
        assert 0 <= d["box"]["y1"] <= d["box"]["y2"] <= 3000
