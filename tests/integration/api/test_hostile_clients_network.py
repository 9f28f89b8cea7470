"""Issue 21's table ("Safe to put on a network"), row by row, against a REAL `detector serve` (uvicorn subprocess on
127.0.0.1, the quick model). The flooding client binds 127.0.0.2 (Linux routes all of 127/8 to loopback), so it is
another address than the one probing /health. Counts are bounded; the head timeout is 2 s here (default 10 s).
The probes live in benchmarks/hostile_clients.py (the same code prints the table).
"""

from __future__ import annotations

import base64
import json
import os
import resource
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks import hostile_clients as probe
from tests.servers import Server, serving

HEAD_TIMEOUT_S = 2
SEND_TIMEOUT_S = 3
BULK_WAIT_S = 1  # a clip or batch waits in line this long for room, then 503 (default 10 s)


@pytest.fixture(scope="module")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("hostile-net")
    (folder / "video-spool").mkdir()
    env = {
        "DETECTOR_INFERENCE__SERVER__HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
        "DETECTOR_INFERENCE__SERVER__VIDEO_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
        "DETECTOR_INFERENCE__SERVER__VIDEO_TMP_DIR": str(folder / "video-spool"),
        "DETECTOR_INFERENCE__SERVER__BULK_WAIT_S": str(BULK_WAIT_S),
    }
    with serving(model_path, folder, env=env) as srv:
        yield srv


@pytest.mark.alone
def test_health_answers_while_one_client_holds_1023_sockets(server: Server) -> None:
    n = min(1023, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100)  # the issue: 1,023 (uvicorn's cap 1,024)
    flood = probe.connection_flood(server.url, n, hold_s=3)
    # Before: every request, /health included, was a 503 for as long as the sockets stayed open.
    assert flood.health_codes and set(flood.health_codes) == {200}, flood.health_codes
    assert probe.p99(flood.health_ms) < 1000, sorted(flood.health_ms)[-5:]
    assert flood.refused >= n - 128  # max_connections_per_client (128) of them held, the rest closed within 1.5 s


def test_a_trickled_head_is_closed_at_the_deadline(server: Server) -> None:
    flood = probe.connection_flood(server.url, 50, trickle=True, hold_s=HEAD_TIMEOUT_S + 1, wait_close_s=8)
    assert flood.refused == 0 and flood.opened == 50
    assert set(flood.health_codes) == {200}, flood.health_codes
    # Before: a head trickled at 1 byte / 0.5 s stayed open for as long as it kept trickling.
    assert flood.closed_after_s is not None and flood.closed_after_s < HEAD_TIMEOUT_S + 2, flood.closed_after_s


def spooled(server: Server) -> list[str]:
    return sorted(p.name for p in (server.log.parent / "video-spool").iterdir())


def test_stalled_video_readers_are_dropped_and_video_jobs_are_bounded(server: Server) -> None:
    clip = probe.noise_clip(frames=300)  # ~25 KB of NDJSON a frame at conf=0: more than the socket buffers hold
    with probe.stalled_video_reader(server.url, clip) as first, probe.stalled_video_reader(server.url, clip) as second:
        assert first.startswith("HTTP/1.1 200") and second.startswith("HTTP/1.1 200")
        time.sleep(0.5)
        # Two clips stream (max_video_jobs=2): a third waits in line (bulk_wait_s), then is refused. Before: no bound.
        started = time.monotonic()
        status, text = probe.post_video(server.url, clip)
        assert status == 503 and "video jobs" in text, (status, text)
        assert BULK_WAIT_S <= time.monotonic() - started < BULK_WAIT_S + 2
        assert len(spooled(server)) == 2
        # Neither client reads: after the send timeout both streams are dropped and their clips removed.
        # Before: the clips stayed for as long as the clients kept their connections open.
        deadline = time.monotonic() + SEND_TIMEOUT_S + 10
        while spooled(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert spooled(server) == []
    log = server.log.read_text()
    assert log.count("dropped a video stream") == 2
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]  # a client's stall is no server error
    status, text = probe.post_video(server.url, clip, query="?vid_stride=10")
    assert status == 200 and text.startswith('{"frame":0,'), (status, text)


def test_a_playlist_naming_a_server_file_is_415(server: Server, model_path: Path) -> None:
    answers = {
        probe.post_video(server.url, probe.hls_playlist(str(path)), "clip.m3u8")
        for path in (model_path, model_path.with_name("missing.onnx"))
    }
    assert len(answers) == 1 and next(iter(answers))[0] == 415, answers


def test_video_frames_over_max_pixels_are_413(server: Server) -> None:
    clip = probe.big_frame_clip(8000, 2)
    before = probe.memory_kb(server.proc.pid)["VmRSS"]
    probe.reset_peak(server.proc.pid)
    status, text = probe.post_video(server.url, clip)
    grown_mb = (probe.memory_kb(server.proc.pid)["VmHWM"] - before) / 1024
    assert status == 413 and "8000x8000" in text, (status, text)
    assert grown_mb < 400, grown_mb  # before: 200, +0.8 GB per clip


def test_cmyk_jpeg_bombs_are_422_without_memory_growth(server: Server) -> None:
    bomb = probe.jpeg_bomb(6000, "CMYK")
    assert len(bomb) < 2000
    growth_mb, codes = probe.growth_mb(server.url, server.proc.pid, bomb, 4, "bomb.jpg")
    assert codes == [422] * 4, codes  # before: 200 (a grey image), up to +665 MB
    assert growth_mb < 60, growth_mb


def test_a_jpeg_with_thousands_of_scans_is_refused_at_once(server: Server) -> None:
    bomb = probe.scan_bomb()
    started = time.monotonic()
    r = httpx.post(server.url + "/predict", files={"file": ("scans.jpg", bomb, "image/jpeg")}, timeout=60)
    assert r.status_code == 422 and "2646 scans" in r.json()["detail"], r.text
    assert time.monotonic() - started < 2


def test_error_bodies_stay_short(server: Server) -> None:
    photo = probe.photo(64, 64, fmt="PNG")
    names = [f"no-such-class-{i}" for i in range(200_000)]  # 3.8 MB of JSON
    r = httpx.post(server.url + "/predict", json={"image_base64": base64.b64encode(photo).decode(), "classes": names})
    assert r.status_code == 400 and "at most 10000" in r.json()["detail"], r.text[:300]
    assert len(r.content) < 4096, len(r.content)  # before: a 422 of 2.6 MB, every name echoed
    field = ",".join(names[:50_000])  # a multipart text field (at most 1 MiB)
    r = httpx.post(server.url + "/predict", files={"file": ("a.png", photo, "image/png")}, data={"classes": field})
    assert r.status_code == 422 and "50000 in all" in r.json()["detail"], r.text[:300]
    assert len(r.content) < 4096, len(r.content)
    r = httpx.post(server.url + "/predict", json={"image_base64": "", "classes": list(range(10, 1_000_010))})
    assert 400 <= r.status_code < 500 and len(r.content) < 4096, (r.status_code, len(r.content))


@pytest.mark.alone
def test_big_json_bodies_do_not_stall_health(server: Server) -> None:
    body = probe.big_json(13.0)

    def post() -> tuple[int, bool]:
        headers = {"content-type": "application/json"}
        r = httpx.post(server.url + "/predict", content=body, headers=headers, timeout=60)
        return r.status_code, "at most 10000" in r.text

    latencies, answers = probe.health_while(server.url, post, 3)
    assert set(answers) == {(400, True)}, answers  # about a million keys: refused before parsing (before: after)
    worst = max(latencies)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if worst >= 500 and load > 2:
        pytest.skip(f"/health worst {worst:.0f} ms with load {load:.1f} per core: the machine is overloaded")
    assert worst < 500, sorted(latencies)[-5:]  # before: 0.7-2.4 s


@pytest.mark.alone
def test_batches_do_not_starve_single_images(server: Server) -> None:
    idle, loaded, batch_codes = probe.normal_during_batches(server.url, batch_clients=4)
    assert batch_codes and set(batch_codes) <= {200, 503}, batch_codes
    assert [c for c, _ in loaded] == [200] * len(loaded), loaded  # no normal request shed
    idle_p50 = statistics.median(t for _, t in idle)
    loaded_p50 = statistics.median(t for _, t in loaded)
    # Before: 0.71 s against 11 ms idle (63x) on the 2-core dev machine; then 40-47 ms (4-5x), the batch clients
    # re-posting each refused 16-image batch at once; now a batch waits in line for room (bulk_wait_s) and the
    # normal p50 was 15-16 ms (1.6x), the clients on the same 2 cores.
    assert loaded_p50 < 0.4, (idle_p50, loaded_p50)  # always: before, 0.71 s even on a quiet machine
    _within_3x(idle_p50, loaded_p50)


def _within_3x(idle_p50: float, loaded_p50: float) -> None:
    """The issue's target: normal p50 under load within 3x its idle value (40 ms at least: timer and scheduler
    noise on a 10 ms request); skipped, not failed, on a machine other jobs overload."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    bound = max(3 * idle_p50, 0.04)
    if loaded_p50 >= bound and load > 2:
        pytest.skip(f"p50 {loaded_p50 * 1e3:.0f} ms vs {idle_p50 * 1e3:.0f} ms idle with load {load:.1f} per core")
    assert loaded_p50 < bound, (idle_p50, loaded_p50)


@pytest.fixture(scope="module")
def keyed_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    import yaml

    from api.admission.auth import new_key

    folder = tmp_path_factory.mktemp("hostile-auth")
    keys, entries = {}, []
    for name, scopes, rate in (("app", ["predict"], 60.0), ("ops", ["admin", "metrics"], 0.0)):
        keys[name], entry = new_key(name, scopes, rate, 0)
        entries.append({**entry, "burst": 3})
    (folder / "keys.yaml").write_text(yaml.safe_dump({"keys": entries}))
    env = {
        "DETECTOR_INFERENCE__SERVER__AUTH__KEYS_FILE": str(folder / "keys.yaml"),
        "DETECTOR_INFERENCE__SERVER__AUTH__AUDIT_LOG": str(folder / "audit.jsonl"),
    }
    with serving(model_path, folder, env=env) as srv:
        yield srv, keys


def test_a_keyed_server_on_loopback(keyed_server: tuple[Server, dict[str, str]]) -> None:
    server, keys = keyed_server
    photo = probe.photo(64, 64, fmt="PNG")

    def predict(key: str | None) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return httpx.post(server.url + "/predict", files={"file": ("a.png", photo, "image/png")}, headers=headers)

    assert httpx.get(server.url + "/health").status_code == 200  # open for probes
    assert predict(None).status_code == 401 and predict("det_wrong").status_code == 401
    # A 10 MB upload without a key is refused from its headers: the body is never read.
    r = httpx.post(server.url + "/predict", content=b"\0" * 10_000_000, headers={"content-type": "image/jpeg"})
    assert r.status_code == 401
    assert predict(keys["ops"]).status_code == 403
    assert httpx.get(server.url + "/metrics", headers={"X-API-Key": keys["app"]}).status_code == 403
    assert httpx.get(server.url + "/metrics", headers={"X-API-Key": keys["ops"]}).status_code == 200
    codes = [predict(keys["app"]).status_code for _ in range(5)]  # burst 3, then 1 a second
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    limited = predict(keys["app"])
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    r = httpx.post(server.url + "/admin/reload", json={"model_path": "x.onnx"}, headers={"X-API-Key": keys["ops"]})
    assert r.status_code == 422, r.text
    audit_file = server.log.parent / "audit.jsonl"
    deadline = time.monotonic() + 5  # the line is written once the response has gone out: wait for it
    audited = '"result": 422'
    while time.monotonic() < deadline and audited not in (audit_file.read_text() if audit_file.exists() else ""):
        time.sleep(0.05)
    audit = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert audit[-1]["who"] == "ops" and audit[-1]["result"] == 422 and audit[-1]["what"] == "POST /admin/reload"


@pytest.mark.alone
def test_video_streams_do_not_shed_single_images(server: Server) -> None:
    idle = probe.timed_predicts(server.url, probe.photo(320, 240, seed=1, fmt="PNG"), 20)
    loaded, video_codes = probe.normal_during_videos(server.url, probe.noise_clip(120), video_clients=9)
    # Before: 9 of 20 normal requests were 503 while 9 clients streamed clips; then none shed but p50 70-90 ms
    # (7-9x), the 7 clients without a video job re-posting their clip at once (1.6 of the 2 cores); now they wait
    # in line (bulk_wait_s): 13 ms (1.3x).
    assert [c for c, _ in loaded] == [200] * len(loaded), loaded
    _within_3x(statistics.median(t for _, t in idle), statistics.median(t for _, t in loaded))
    assert 200 in video_codes and set(video_codes) <= {200, 503}, video_codes  # 2 at a time (max_video_jobs)
