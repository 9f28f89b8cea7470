"""Probes of a live `detector serve` as hostile or unlucky clients behave (loopback only, bounded in count/time).

Each probe is one row of issue 13's table; tests/integration/api/test_hostile_clients.py asserts on them, and
`python -m benchmarks.hostile_clients --url http://127.0.0.1:8000 --pid PID` prints the table for any server
(PID: the server process, for its memory in /proc/PID/status).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

BOUNDARY = "hostileboundary"


# -- images ----------------------------------------------------------------------------------------------------------


def jpeg_bomb(side: int = 6000, mode: str = "RGB") -> bytes:
    """A ~1 KB JPEG whose header declares side x side pixels, with its scan data cut out (EOI right after SOS).
    `mode="CMYK"`: a four-component one (what PIL, not libjpeg-turbo's strict decoder, used to decode)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 30)).convert(mode).save(buf, "JPEG", quality=50)
    full = buf.getvalue()
    sos = full.index(b"\xff\xda")
    header_len = int.from_bytes(full[sos + 2 : sos + 4], "big")
    return full[: sos + 2 + header_len] + b"\xff\xd9"


def scan_bomb(side: int = 4800, scans: int = 2646) -> bytes:
    """A flat progressive JPEG whose last scan is repeated until the file holds `scans` scans (the issue's file:
    4800x4800, 2,646 scans, 253 KB, decoded in 9-46 s)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 30)).save(buf, "JPEG", quality=80, progressive=True)
    data = buf.getvalue()
    last_sos = data.rindex(b"\xff\xda")
    last = data[last_sos : data.rindex(b"\xff\xd9")]
    return data[:last_sos] + last * (scans - data.count(b"\xff\xda") + 1) + b"\xff\xd9"


def big_json(megabytes: float = 13.0) -> bytes:
    """A JSON object of about `megabytes` MB with about a million keys (400 once parsed: unexpected fields)."""
    keys = b",".join(b'"k%d": 0' % i for i in range(int(megabytes * 1e6 / 13)))
    return b'{"image_base64": "", ' + keys + b"}"


def health_while(url: str, work: Any, threads: int) -> tuple[list[float], list[Any]]:
    """Run `work()` in `threads` threads while polling /health: (health latencies in ms, each work's result)."""
    results: list[Any] = []
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work) for _ in range(threads)]
        latencies: list[float] = []
        with httpx.Client(base_url=url, timeout=30) as http:
            while not all(f.done() for f in futures):
                t0 = time.perf_counter()
                http.get("/health")
                latencies.append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.02)
        results = [f.result() for f in futures]
    return latencies, results


def normal_during_batches(
    url: str, batch_clients: int = 4, files: int = 16, normal_n: int = 20
) -> tuple[list[tuple[int, float]], list[tuple[int, float]], list[int]]:
    """`normal_n` sequential /predict calls alone, then again while `batch_clients` clients loop `files`-image
    /predict/batch requests: (idle (status, s) each, loaded (status, s) each, batch statuses)."""
    normal = photo(320, 240, seed=1, fmt="PNG")
    idle = timed_predicts(url, normal, normal_n)
    parts = [("files", (f"{i}.png", photo(320, 240, seed=10 + i, fmt="PNG"), "image/png")) for i in range(files)]

    def one_batch(http: httpx.Client) -> int:
        return http.post("/predict/batch", files=parts).status_code

    loaded, batch_codes = _normal_while(url, one_batch, batch_clients, normal_n)
    return idle, loaded, batch_codes


def normal_during_videos(
    url: str, clip: bytes, video_clients: int = 9, normal_n: int = 20
) -> tuple[list[tuple[int, float]], list[int]]:
    """`normal_n` sequential /predict calls while `video_clients` clients loop posting `clip` to /predict/video:
    (normal (status, s) each, video statuses)."""
    return _normal_while(url, lambda _http: post_video(url, clip)[0], video_clients, normal_n)


def _normal_while(
    url: str, heavy: Callable[[httpx.Client], int], clients: int, normal_n: int
) -> tuple[list[tuple[int, float]], list[int]]:
    """`normal_n` sequential /predict calls while `clients` threads loop `heavy` (one heavy request, its status):
    (normal (status, s) each, heavy statuses)."""
    normal = photo(320, 240, seed=1, fmt="PNG")
    stop = threading.Event()
    codes: list[int] = []

    def loop() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while not stop.is_set():
                codes.append(heavy(http))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    try:
        loaded = timed_predicts(url, normal, normal_n)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    return loaded, codes


def png16(side: int = 6300) -> bytes:
    """A 16-bit grayscale PNG of side x side pixels that compresses to ~80 KB (a gradient band, then flat)."""
    arr = np.zeros((side, side), np.uint16)
    arr[: side // 64] = np.linspace(0, 65535, side, dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def photo(width: int, height: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    """A photo-like image (smooth noise) of the given size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def mpo_photo(source: bytes) -> bytes:
    """An MPO (multi-picture JPEG, as phone cameras write): `source` as the first frame, a grey second frame."""
    first = Image.open(io.BytesIO(source)).convert("RGB")
    second = Image.new("RGB", first.size, (128, 128, 128))
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[second])
    return buf.getvalue()


def multipart(data: bytes, filename: str = "a.jpg") -> tuple[bytes, str]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


# -- server facts ----------------------------------------------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB, from /proc/PID/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE)}


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def statuses(metrics_text: str, route: str = "/predict") -> dict[str, float]:
    """status -> count of detector_http_requests_total for `route`."""
    found: dict[str, float] = {}
    pattern = r"detector_http_requests_total\{([^}]*)\} ([0-9.e+]+)"
    for labels, value in re.findall(pattern, metrics_text):
        parts = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if parts.get("route") == route:
            found[parts["status"]] = found.get(parts["status"], 0) + float(value)
    return found


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


# -- probes ----------------------------------------------------------------------------------------------------------


@dataclass
class SlowResult:
    opened: int
    answers: list[str] = field(default_factory=list)  # first status line each slow client got back ("" = none)
    closed: list[bool] = field(default_factory=list)  # whether the server then closed the connection


@contextmanager
def slow_uploaders(
    url: str, n: int, interval_s: float = 0.5, raw: bool = False, video: bool = False
) -> Iterator[SlowResult]:
    """`n` clients that send headers for a 10 KB multipart upload (with `raw`, the bytes as the body, `image/jpeg`;
    with `video`, an MP4's first bytes to /predict/video, `video/mp4` when raw), then trickle it at 1 byte per
    `interval_s`. Inside the `with` they are trickling; on exit each one's answer (if any) is collected."""
    host, port = _address(url)
    data = (b"\0\0\0\x18ftypmp42" if video else b"\xff\xd8") + b"\0" * 10_000
    body, ctype = (data, "video/mp4" if video else "image/jpeg") if raw else multipart(data)
    path = "/predict/video" if video else "/predict"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(head.encode())
        socks.append(s)
    result = SlowResult(len(socks))
    stop = threading.Event()

    def trickle() -> None:
        offset = 0
        answered: set[socket.socket] = set()
        while not stop.is_set() and offset < len(body):
            # Stop sending to a socket the server has answered: bytes sent after its close would draw a reset
            # that can discard the answer before we read it.
            answered.update(select.select(socks, [], [], 0)[0])
            for s in socks:
                if s in answered:
                    continue
                try:
                    s.send(body[offset : offset + 1])
                except OSError:
                    answered.add(s)
            offset += 1
            stop.wait(interval_s)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        for s in socks:
            result.answers.append(_first_line(s))
            result.closed.append(wait_closed(s, 2))
            s.close()


def _first_line(s: socket.socket, timeout_s: float = 5) -> str:
    s.settimeout(timeout_s)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def wait_closed(s: socket.socket, timeout_s: float = 5) -> bool:
    """True once the server has closed the connection (recv returns EOF or a reset)."""
    s.settimeout(timeout_s)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except OSError:
        return False


def timed_predicts(url: str, data: bytes, n: int, query: str = "") -> list[tuple[int, float]]:
    """`n` sequential normal requests: (status, seconds) each."""
    out = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(n):
            t0 = time.perf_counter()
            r = http.post(f"/predict{query}", files={"file": ("a.png", data, "application/octet-stream")})
            out.append((r.status_code, time.perf_counter() - t0))
    return out


def predict_all(url: str, images: list[bytes], query: str = "", concurrency: int = 1) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=max(concurrency, 1))) as http:
        barrier = threading.Barrier(concurrency) if concurrency > 1 else None

        def one(data: bytes) -> httpx.Response:
            if barrier is not None:
                with suppress(threading.BrokenBarrierError):
                    barrier.wait(10)
            return http.post(f"/predict{query}", files={"file": ("a.img", data, "application/octet-stream")})

        if concurrency == 1:
            return [one(d) for d in images]
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, images))


def mixed_shapes(url: str, images: list[bytes], query: str = "?conf=0.05") -> tuple[int, list[int]]:
    """Send `images` one by one, then all at once: (answers that differ, batch sizes seen concurrently)."""
    sequential = [r.json()["detections"] for r in predict_all(url, images, query)]
    concurrent = predict_all(url, images, query, concurrency=len(images))
    assert all(r.status_code == 200 for r in concurrent), [r.status_code for r in concurrent]
    differ = sum(r.json()["detections"] != want for r, want in zip(concurrent, sequential, strict=True))
    return differ, [int(r.headers.get("X-Batch-Size", "1")) for r in concurrent]


def disconnect_storm(url: str, n: int, body_bytes: int = 200_000) -> None:
    """`n` clients that declare a body, send a part of it, and hang up."""
    host, port = _address(url)
    body, ctype = multipart(b"\xff\xd8" + b"\0" * body_bytes)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"

    def one(_: int) -> None:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(head.encode() + body[: len(body) // 3])
            time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset: the rudest hang-up

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))


def header_bomb(url: str, size: int = 1_000_000) -> str:
    """A GET /health with one `size`-byte header: the status line of the answer ("" if none came back)."""
    host, port = _address(url)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        line = ""
        s.settimeout(0.01)
        try:
            s.sendall(b"X-Filler: ")
            while sent < size:
                s.sendall(b"a" * 16384)
                sent += 16384
                try:
                    data = s.recv(4096)  # answered early (the limit) or closed
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    break
                except TimeoutError:
                    continue
            else:
                s.sendall(b"\r\n\r\n")
        except OSError:
            pass
        return line or _first_line(s)


@dataclass
class FloodResult:
    opened: int = 0  # connections the kernel accepted
    refused: int = 0  # ... that the server then answered 503 or closed within 1.5 s (per-address cap)
    health_ms: list[float] = field(default_factory=list)  # /health latency from another address meanwhile
    health_codes: list[int] = field(default_factory=list)
    closed_after_s: float | None = None  # when the server had closed all the held ones (None: not within the wait)


def connection_flood(
    url: str, n: int, source: str = "127.0.0.2", trickle: bool = False, hold_s: float = 3.0, wait_close_s: float = 0.0
) -> FloodResult:
    """One client (source address `source`, loopback only) opens `n` connections and sends nothing (or, with
    `trickle`, a request head one byte every 0.5 s); meanwhile /health is polled from 127.0.0.1 for `hold_s`.
    With `wait_close_s`, also how long until the server has closed every held connection."""
    host, port = _address(url)
    result = FloodResult()
    socks: list[socket.socket] = []
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    try:
        for _ in range(n):
            try:
                s = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
            except OSError:
                result.refused += 1
                continue
            s.setblocking(False)
            socks.append(s)
        result.opened = len(socks)
        time.sleep(1.5)
        alive = []
        for s in socks:  # refused within 1.5 s: answered 503 or closed (over the per-address cap: a 1 s deadline)
            try:
                data = s.recv(4096)
                if data == b"" or data.startswith(b"HTTP/1.1 503"):
                    result.refused += 1
                    continue
            except BlockingIOError:
                pass
            except OSError:
                result.refused += 1
                continue
            alive.append(s)
        started = time.monotonic()
        offset = 0
        with httpx.Client(base_url=url, timeout=10) as http:
            while time.monotonic() - started < hold_s:
                if trickle and offset < len(head):
                    for s in alive:
                        with suppress(OSError):
                            s.send(head[offset : offset + 1])
                    offset += 1
                t0 = time.perf_counter()
                try:
                    result.health_codes.append(http.get("/health").status_code)
                except httpx.HTTPError:
                    result.health_codes.append(0)
                result.health_ms.append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.5 if trickle else 0.1)
        if wait_close_s:
            result.closed_after_s = _all_closed_after(alive, started, wait_close_s)
    finally:
        for s in socks:
            s.close()
    return result


def _all_closed_after(socks: list[socket.socket], started: float, limit_s: float) -> float | None:
    """Seconds from `started` until the server has answered or closed every socket; None if not within `limit_s`."""
    open_ = set(socks)
    while open_ and time.monotonic() - started < limit_s:
        for s in list(open_):
            try:
                s.recv(4096)  # data (a 408) or EOF: the server answered or closed it
            except BlockingIOError:
                continue  # still open and silent
            except OSError:
                pass  # reset: closed
            open_.discard(s)
        time.sleep(0.1)
    return None if open_ else time.monotonic() - started


def noise_clip(frames: int = 60, side: int = 320, fourcc: str = "MJPG") -> bytes:
    """An AVI (MJPEG) of `frames` smooth-noise frames, side x side (~15 KB each): a clip on which a model at conf=0
    reports a couple of hundred boxes a frame."""
    import tempfile

    import cv2

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 15, (side, side))
        for _ in range(frames):
            small = rng.integers(0, 255, (side // 16, side // 16, 3), dtype=np.uint8)
            writer.write(cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC))
        writer.release()
        return path.read_bytes()


def big_frame_clip(side: int = 8000, frames: int = 2) -> bytes:
    """An MJPEG AVI of `frames` flat side x side frames (a few MB; each frame decodes to side*side*3 bytes)."""
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (side, side))
        frame = np.full((side, side, 3), 90, np.uint8)
        for _ in range(frames):
            writer.write(frame)
        writer.release()
        return path.read_bytes()


def hls_playlist(target: str) -> bytes:
    """A ~100-byte HLS playlist naming `target` (a path on the server's disk)."""
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode()


def post_video(url: str, clip: bytes, name: str = "clip.avi", query: str = "") -> tuple[int, str]:
    """POST /predict/video, reading the whole answer: (status, the first 300 characters of the body)."""
    r = httpx.post(f"{url}/predict/video{query}", files={"file": (name, clip, "application/octet-stream")}, timeout=120)
    return r.status_code, r.text[:300]


@contextmanager
def stalled_video_reader(url: str, clip: bytes, query: str = "?conf=0&max_det=1000") -> Iterator[str]:
    """A client that posts `clip` to /predict/video, reads the status line, then stops reading (a 4 KiB receive
    buffer, so the server's sends soon block). Yields the status line; the socket stays open inside the `with`."""
    host, port = _address(url)
    body, ctype = multipart(clip, "clip.avi")
    head = (
        f"POST /predict/video{query} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(60)
    try:
        s.connect((host, port))
        s.sendall(head.encode() + body)
        first = s.recv(64).split(b"\r\n", 1)[0].decode("latin-1")
        yield first
    finally:
        s.close()


BURST_SCRIPT = r"""
import asyncio, json, sys, httpx
url, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, "rb").read()
async def main():
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=n)) as http:
        async def one():
            try:
                r = await http.post("/predict", files={"file": ("a.jpg", data, "image/jpeg")})
                return [r.status_code, r.headers.get("Retry-After")]
            except httpx.HTTPError as exc:
                return [type(exc).__name__, None]
        print(json.dumps(await asyncio.gather(*[one() for _ in range(n)])))
asyncio.run(main())
"""


def health_during_burst(url: str, image_path: Path, n: int = 256) -> tuple[list[float], list[list[Any]]]:
    """`n` concurrent uploads of `image_path` from another process while this one polls /health:
    (health latencies in ms, [status, Retry-After] of every upload)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BURST_SCRIPT, url, str(n), str(image_path)], stdout=subprocess.PIPE, text=True
    )
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as http:
        while proc.poll() is None:
            t0 = time.perf_counter()
            r = http.get("/health")
            latencies.append((time.perf_counter() - t0) * 1e3)
            assert r.status_code == 200, r.text
            time.sleep(0.01)
    out, _ = proc.communicate(timeout=120)
    return latencies, json.loads(out)


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


# -- the table -------------------------------------------------------------------------------------------------------


async def _concurrent(url: str, data: bytes, n: int, name: str) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        rs = await asyncio.gather(
            *[http.post("/predict", files={"file": (name, data, "application/octet-stream")}) for _ in range(n)]
        )
    return [r.status_code for r in rs]


def growth_mb(url: str, pid: int, data: bytes, n: int, name: str) -> tuple[float, list[int]]:
    """Peak RSS growth (MB) of the server while `n` copies of `data` are posted at once, and their statuses."""
    reset_peak(pid)
    before = memory_kb(pid)["VmRSS"]
    codes = asyncio.run(_concurrent(url, data, n, name))
    return (memory_kb(pid)["VmHWM"] - before) / 1024, codes


def main() -> None:  # pragma: no cover - a manual probe; the test module runs the same functions
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--slow", type=int, default=80)
    parser.add_argument("--only-21", action="store_true", help="only issue 21's rows (connections, video, decode...)")
    args = parser.parse_args()
    if args.only_21:
        for probe, result in issue21_rows(args.url, args.pid):
            print(f"| {probe} | {result} |")
        return
    url, pid = args.url, args.pid
    rows: list[tuple[str, str]] = []
    normal = photo(640, 480, seed=1, fmt="PNG")
    with slow_uploaders(url, args.slow):
        time.sleep(1)
        got = timed_predicts(url, normal, 10)
        health = httpx.get(url + "/health").status_code
    codes = [c for c, _ in got]
    rows.append(
        (
            f"{args.slow} slow uploaders",
            f"normal /predict: {codes.count(200)}/10 200 (median {statistics.median(t for _, t in got) * 1e3:.0f} ms), "
            f"/health {health}",
        )
    )
    shapes = [(128, 128), (160, 96), (96, 160), (200, 120), (120, 200), (256, 144), (144, 256), (300, 100)]
    images = [photo(w, h, seed=i, fmt="PNG") for i in range(8) for w, h in shapes]
    differ, sizes = mixed_shapes(url, images)
    rows.append(("64 concurrent over 8 shapes", f"{differ}/64 differ from sequential; max batch {max(sizes)}"))
    mb, codes = growth_mb(url, pid, jpeg_bomb(), 4, "bomb.jpg")
    rows.append(("4 JPEG bombs 6000x6000", f"statuses {sorted(set(codes))}, peak RSS growth {mb:.0f} MB"))
    mb, codes = growth_mb(url, pid, png16(), 4, "big.png")
    rows.append(("4 16-bit PNGs 6300x6300", f"statuses {sorted(set(codes))}, peak RSS growth {mb:.0f} MB"))
    before = statuses(httpx.get(url + "/metrics").text)
    disconnect_storm(url, 100)
    time.sleep(1)
    after = statuses(httpx.get(url + "/metrics").text)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    rows.append(("100 disconnects mid-upload", f"/metrics delta {delta}"))
    rows.append(("1 MB header", header_bomb(url)))
    mpo = mpo_photo(photo(800, 600, seed=3))
    r = httpx.post(url + "/predict", files={"file": ("a.jpg", mpo, "image/jpeg")}, timeout=30)
    rows.append(("MPO JPEG", f"{r.status_code} {r.text[:80] if r.status_code != 200 else ''}"))
    path = Path("/tmp/hostile-1080p.jpg")
    path.write_bytes(photo(1920, 1080, seed=4))
    lat, answers = health_during_burst(url, path)
    kinds = sorted({str(a[0]) for a in answers})
    rows.append(("256-request 1080p burst", f"/health p99 {p99(lat):.0f} ms over {len(lat)} probes; uploads {kinds}"))
    for probe, result in rows:
        print(f"| {probe} | {result} |")


def issue21_rows(url: str, pid: int) -> list[tuple[str, str]]:  # pragma: no cover - a manual probe
    """Issue 21's table, regenerated (the same probes tests/integration/api/test_hostile_clients_network.py runs)."""
    rows: list[tuple[str, str]] = []
    flood = connection_flood(url, 1023, hold_s=3)
    rows.append(
        (
            "1,023 idle sockets from one address",
            f"{flood.refused} closed within 1.5 s (per-address cap), /health {sorted(set(flood.health_codes))} "
            f"p99 {p99(flood.health_ms):.0f} ms",
        )
    )
    trickle = connection_flood(url, 50, trickle=True, hold_s=1, wait_close_s=30)
    closed = f"{trickle.closed_after_s:.1f} s" if trickle.closed_after_s is not None else "not within 30 s"
    rows.append(("50 heads trickled at 1 B / 0.5 s", f"all closed after {closed}"))
    answers = {post_video(url, hls_playlist(path), "clip.m3u8") for path in ("/etc/hostname", "/nonexistent")}
    rows.append(("HLS playlist naming a server file / a missing one", f"{sorted(a[0] for a in answers)}"))
    reset_peak(pid)
    before = memory_kb(pid)["VmRSS"]
    status, _ = post_video(url, big_frame_clip(8000, 2))
    rows.append(("MJPEG AVI of 8000x8000 frames", f"{status}, +{(memory_kb(pid)['VmHWM'] - before) / 1024:.0f} MB"))
    t0 = time.perf_counter()
    r = httpx.post(url + "/predict", files={"file": ("s.jpg", scan_bomb(), "image/jpeg")})
    rows.append(
        ("progressive JPEG 4800x4800, 2,646 scans", f"{r.status_code} in {(time.perf_counter() - t0) * 1e3:.0f} ms")
    )
    mb, codes = growth_mb(url, pid, jpeg_bomb(6000, "CMYK"), 4, "cmyk.jpg")
    rows.append(("4 CMYK 6000x6000 JPEGs without scan data", f"statuses {sorted(set(codes))}, +{mb:.0f} MB"))
    names = [f"no-such-class-{i}" for i in range(200_000)]
    r = httpx.post(url + "/predict", json={"image_base64": "", "classes": names})
    rows.append(("classes= with 200k unknown names", f"{r.status_code}, body {len(r.content)} bytes"))
    body = big_json(13.0)

    def post() -> int:
        headers = {"content-type": "application/json"}
        return httpx.post(url + "/predict", content=body, headers=headers, timeout=60).status_code

    lat, codes = health_while(url, post, 4)
    rows.append(("4 clients posting 13 MB JSON objects", f"{sorted(set(codes))}; /health worst {max(lat):.0f} ms"))
    loaded_v, video_codes = normal_during_videos(url, noise_clip(120))
    rows.append(
        (
            "9 clients looping 120-frame clips + one /predict client",
            f"normal p50 {statistics.median(t for _, t in loaded_v) * 1e3:.0f} ms, normal statuses "
            f"{sorted({c for c, _ in loaded_v})}, video statuses {sorted(set(video_codes))}",
        )
    )
    idle, loaded, _ = normal_during_batches(url, 4)
    rows.append(
        (
            "4 clients looping 16-image batches + one /predict client",
            f"normal p50 {statistics.median(t for _, t in loaded) * 1e3:.0f} ms (idle "
            f"{statistics.median(t for _, t in idle) * 1e3:.0f} ms), normal statuses {sorted({c for c, _ in loaded})}",
        )
    )
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
