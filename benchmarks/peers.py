"""`python -m benchmarks.peers`: this project against the strongest thing a user would run instead, at 640 px on
real photos, FP32 and INT8, in-process and over HTTP; writes reports/peers.{json,md}.

Peers, all from the same trained weights:
- Ultralytics' own OpenVINO exports, FP32 and INT8 (`YOLO(pt).export(format="openvino", int8=True, data=...)`,
  NNCF inside), and its ONNX Runtime predictor;
- over HTTP, "the afternoon service" (`benchmarks/afternoon_service.py`: FastAPI + `YOLO(model).predict`), on
  the faster of Ultralytics' two OpenVINO exports in the in-process phase (its INT8; or its FP32 export, which
  computes in bf16 on a CPU with AMX and there beats it), against our `detector serve` on our INT8 model.

Images: Ultralytics' bus.jpg (810x1080) and zidane.jpg (1280x720), plus a 1920x1080 JPEG made from zidane.jpg.
In-process runners are timed interleaved (blocks of calls, rotating order: `backend_bench.interleave`), batch 1,
one image per call cycling through the photos. HTTP pairs alternate in rounds; each cell's p50 is the median of its
rounds. Everything is exported offline into a cache folder keyed by the weights' sha256.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image

from benchmarks.backend_bench import Samples, interleave
from benchmarks.errors import BenchmarkInputError
from benchmarks.http_bench import HttpPlan, _request_kwargs, run_cell
from benchmarks.inputs import export_variant, ultralytics_assets
from benchmarks.machine import library_versions, machine_info, machine_line, usable_cores
from benchmarks.runners import (
    ULTRALYTICS_ONNX,
    ULTRALYTICS_OPENVINO,
    ULTRALYTICS_OPENVINO_F32,
    ULTRALYTICS_OPENVINO_INT8,
    Calls,
    DetectorRunner,
    Runner,
    UltralyticsRunner,
    force_openvino_f32,
)
from benchmarks.service import free_port, http_server, local_service
from benchmarks.stats import Budget, summarize
from detector.config import Int8Config, OpenVinoConfig
from detector.data import load_names
from detector.data.yolo_format import present_splits, write_data_yaml
from detector.errors import DetectorError
from detector.files import write_atomic
from detector.runtime import Timings, backends
from detector.runtime.images import DEFAULT_MAX_PIXELS, decode_image_scaled
from detector.runtime.metadata import read_onnx_metadata, sha256_file

log = logging.getLogger("benchmarks")

Image_ = npt.NDArray[np.uint8]


def peer_photos() -> list[tuple[str, Image_, bytes]]:
    """(name, RGB array, JPEG bytes) of bus.jpg, zidane.jpg and a 1920x1080 JPEG made from zidane.jpg."""
    assets = {p.name: p for p in ultralytics_assets()}
    if not {"bus.jpg", "zidane.jpg"} <= set(assets):
        raise BenchmarkInputError("Ultralytics' bundled bus.jpg and zidane.jpg are needed (install the train extra)")
    photos = []
    for name in ("bus.jpg", "zidane.jpg"):
        data = assets[name].read_bytes()
        photos.append((name, _decode(data), data))
    big = cv2.resize(photos[1][1], (1920, 1080), interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="JPEG", quality=90)
    photos.append(("zidane-1920x1080.jpg", _decode(buffer.getvalue()), buffer.getvalue()))
    return photos


def _decode(data: bytes) -> Image_:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BenchmarkInputError("cannot decode a benchmark photo")
    rgb: Image_ = np.ascontiguousarray(bgr[..., ::-1]).astype(np.uint8)
    return rgb


def ultralytics_openvino(weights: Path, size: int, int8: bool, data_dir: Path, cache_dir: Path) -> Path:
    """Ultralytics' own OpenVINO export of `weights` (FP32, or INT8 calibrated on `data_dir`), cached."""
    from ultralytics import YOLO

    tag = f"{sha256_file(weights)[:12]}-{size}-{'int8' if int8 else 'fp32'}"
    out = cache_dir / f"ultralytics-{tag}_openvino_model"  # Ultralytics recognises the format by this suffix
    if (out / "metadata.yaml").is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="ov-export-") as tmp:
        local = Path(tmp) / "best.pt"
        local.write_bytes(weights.read_bytes())
        options: dict[str, Any] = {"format": "openvino", "imgsz": size}
        if int8:
            names = load_names(data_dir)
            yaml = write_data_yaml(Path(tmp) / "data.yaml", names, present_splits(data_dir), data_dir)
            options.update(int8=True, data=str(yaml))
        produced = Path(YOLO(str(local)).export(**options))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), str(out))  # the cache is usually on another filesystem than /tmp
    return out


def our_int8(fp32: Path, data_dir: Path, cache_dir: Path) -> Path:
    """Our INT8 model of `fp32` (`detector export int8` with the default gate), cached by the FP32 file's hash."""
    from export.int8 import export_int8

    out = cache_dir / f"{fp32.stem}-{sha256_file(fp32)[:12]}.int8.onnx"
    if not out.is_file():
        report = export_int8(fp32, out, data_dir, Int8Config())
        log.info("INT8 gate: %s", report["gate"])
    return out


@contextmanager
def afternoon_service(model: Path, size: int, startup_s: float = 180.0) -> Iterator[str]:
    """`uvicorn benchmarks.afternoon_service:app` on a free port (one worker, as an afternoon's service runs)."""
    port = free_port()
    env = {**os.environ, "AFTERNOON_MODEL": str(model), "AFTERNOON_IMGSZ": str(size)}
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.afternoon_service:app", "--port", str(port)]
    with http_server(cmd, env, port, "the afternoon service", startup_s) as url:
        yield url


class _Cycle:
    """Batch-1 calls that cycle through the photos, so every runner sees the same sequence of shapes."""

    def __init__(self, calls: list[Calls]) -> None:
        self.calls = calls
        self.i = 0

    def end_to_end(self) -> float:
        self.i += 1
        return self.calls[self.i % len(self.calls)].end_to_end()


FROM_JPEG = ", from JPEG"  # suffix of the runners that start from the JPEG bytes, as a service does
PEER_PATHS = {ULTRALYTICS_OPENVINO_INT8: "int8", ULTRALYTICS_OPENVINO: "fp32/bf16"}  # Ultralytics' OpenVINO paths


def ours_from_jpeg(runner: DetectorRunner, data: bytes) -> Calls:
    """What `POST /predict` does minus HTTP: decode the bytes as the service does (`decode_mode: reduced`) and
    detect. HTTP overhead = HTTP p50 - this p50, on the same photos."""
    detector = runner.detector
    size = (int(detector.input_shape[0]), int(detector.input_shape[1]))

    def end_to_end() -> float:
        image = decode_image_scaled(data, DEFAULT_MAX_PIXELS, size)
        timings = Timings()
        detector.predict_batch([image.pixels], timings=timings)
        return timings.inference_ms

    return Calls(end_to_end, None)


def ultralytics_from_jpeg(runner: UltralyticsRunner, data: bytes) -> Calls:
    """What the afternoon service does minus HTTP: `cv2.imdecode` + `YOLO.predict`."""

    def end_to_end() -> float:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        results = runner.model.predict(image, imgsz=runner.size, conf=0.25, iou=0.7, device="cpu", verbose=False)
        return float(results[0].speed["inference"])

    return Calls(end_to_end, None)


def in_process(
    runners: dict[str, Runner], photos: list[tuple[str, Image_, bytes]], budget: Budget
) -> tuple[dict[str, Samples], dict[str, str]]:
    """Every runner on decoded arrays; our INT8 and Ultralytics' two OpenVINO exports also from the JPEG bytes (decode
    included), as a service starts: its FP32 export is the faster one where the CPU computes it in bf16 (AMX)."""
    cycles = {name: _Cycle([r.prepare([image]) for _, image, _ in photos]) for name, r in runners.items()}
    ours = runners.get("ours openvino int8")
    if isinstance(ours, DetectorRunner):
        cycles["ours openvino int8" + FROM_JPEG] = _Cycle([ours_from_jpeg(ours, data) for *_, data in photos])
    for name in PEER_PATHS:
        theirs = runners.get(name)
        if isinstance(theirs, UltralyticsRunner):
            cycles[name + FROM_JPEG] = _Cycle([ultralytics_from_jpeg(theirs, data) for *_, data in photos])
    calls = {name: Calls(c.end_to_end, None) for name, c in cycles.items()}
    return interleave(calls, budget)


HTTP_LEVELS = (1, 4, 8, 16)


def http_pairs(
    services: dict[str, str],
    jpegs: list[bytes],
    rounds: int,
    requests: int,
    seconds: float,
    levels: tuple[int, ...] = HTTP_LEVELS,
) -> list[dict[str, Any]]:
    """Latency and throughput of each service at each concurrency in `levels`, in alternating rounds (order rotating
    each round). A cell sends `requests` per 4 clients (at least `requests`) within `seconds`."""
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    bodies = _request_kwargs("multipart", jpegs)
    names = list(services)
    pool = max(levels)
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool)) as client:
        for name in names:  # warm-up: connection setup, lazy compilation of every photo's shape
            for body in bodies * 2:
                client.post(f"{services[name]}/predict", **body)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                for concurrency in levels:
                    plan = HttpPlan(url=services[name], concurrency=[concurrency], inputs=["multipart"])
                    count = requests * max(1, concurrency // 4)
                    plan = HttpPlan(**{**plan.__dict__, "requests": count, "max_seconds": seconds})
                    cell = run_cell(client, f"{services[name]}/predict", bodies, concurrency, plan)
                    cells.setdefault((name, concurrency), []).append(cell)
    out = []
    for (name, concurrency), got in cells.items():
        p50s = [c["latency"]["p50_ms"] for c in got if c["latency"]]
        rps = [c["throughput_rps"] for c in got if c["throughput_rps"]]
        out.append(
            {
                "service": name,
                "concurrency": concurrency,
                "p50_ms": round(float(np.median(p50s)), 2) if p50s else None,
                "throughput_rps": round(float(np.median(rps)), 2) if rps else None,
                "errors": sum(c["errors"] for c in got),
                "rounds": len(got),
            }
        )
    return out


def fastest_peer(in_process: dict[str, dict[str, float]], suffix: str = FROM_JPEG) -> str | None:
    """The faster of Ultralytics' two OpenVINO exports in the in-process phase (its INT8, or its FP32 export, which
    computes in bf16 where the CPU has it), from the JPEG bytes (the bar of issue 26's c=1 target) or, with
    `suffix=""`, on decoded arrays. None: neither ran."""
    timed = {name: in_process[name + suffix]["p50_ms"] for name in PEER_PATHS if in_process.get(name + suffix)}
    return min(timed, key=lambda name: timed[name]) if timed else None


def http_overhead(
    url: str,
    calls: list[Calls],
    jpegs: list[bytes],
    rounds: int,
    block: int = 10,
    peer: tuple[str, list[Calls]] | None = None,
) -> dict[str, Any]:
    """HTTP c=1 against the same work in-process (`ours_from_jpeg` on the same model and photos) and, with `peer`
    (its name, its calls), against Ultralytics' fastest in-process path from the JPEG (`ultralytics_from_jpeg`), in
    alternating blocks of `block` calls: both are measured in one stretch of time, not across the run's phases,
    whose load on a shared machine differs by more than what is compared (a run on 2026-12-05 put HTTP c=1 at 0.98x
    the bar taken minutes earlier, where the runs before it gave 0.77-0.85x). HTTP is timed twice: a multipart
    upload (what the targets use) and the JPEG as the body (`Content-Type: image/jpeg`, `http_raw_p50_ms`), both
    from httpx; and the same raw body from the standard library's `http.client` (`http_lean_p50_ms`), which costs
    the client about half httpx's CPU a request: how much of the overhead is the Python client's, not the service's."""
    bodies = {"http": _request_kwargs("multipart", jpegs), "http_raw": _request_kwargs("raw", jpegs)}
    lean = LeanClient(url)
    sides: dict[str, list[Calls]] = {"local": calls, **({"peer": peer[1]} if peer else {})}
    kinds = [*bodies, "http_lean"]
    timed: dict[str, list[float]] = {**{kind: [] for kind in kinds}, **{side: [] for side in sides}}
    endpoint: list[float] = []  # the multipart requests' own `total` (Server-Timing): from the endpoint's start
    with httpx.Client(timeout=60) as client, lean:

        def post(kind: str, n: int) -> None:
            if kind == "http_lean":
                lean.post_jpeg(jpegs[n % len(jpegs)])
                return
            response = client.post(f"{url}/predict", **bodies[kind][n % len(jpegs)])
            response.raise_for_status()
            if kind == "http":
                endpoint.append(server_total_ms(response.headers.get("Server-Timing", "")))

        for kind in kinds:  # warm-up (connections, every photo's shape)
            for n in range(2 * len(jpegs)):
                post(kind, n)
        for side_calls in sides.values():
            for call in side_calls * 2:
                call.end_to_end()
        endpoint.clear()  # the warm-up's
        for r in range(rounds):
            # The HTTP blocks take turns going first, each after the same pause: the first calls after a pause are
            # the slower ones: a block that always followed another HTTP block was favoured by over 1 ms (the first
            # run with the raw body put it 1.34 ms under multipart; taking turns, 0.03 ms).
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                for i in range(block):
                    t0 = time.perf_counter()
                    post(kind, r * block + i)
                    timed[kind].append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.05)
            for side, side_calls in sides.items():
                for i in range(block):
                    t0 = time.perf_counter()
                    side_calls[(r * block + i) % len(side_calls)].end_to_end()
                    timed[side].append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.05)  # before each turn (after an HTTP one: the server's thread pool goes idle)
    p50 = {side: float(np.median(ms)) for side, ms in timed.items()}
    out: dict[str, Any] = {
        "http_p50_ms": round(p50["http"], 2),
        "in_process_p50_ms": round(p50["local"], 2),
        "overhead_ms": round(p50["http"] - p50["local"], 2),
        "http_raw_p50_ms": round(p50["http_raw"], 2),
        "overhead_raw_ms": round(p50["http_raw"] - p50["local"], 2),
        "http_lean_p50_ms": round(p50["http_lean"], 2),
        "overhead_lean_ms": round(p50["http_lean"] - p50["local"], 2),
        "n": len(timed["http"]),
    }
    if endpoint and not np.isnan(endpoint).any():  # a service that sends no Server-Timing: not split
        # Where the multipart overhead goes: the service's endpoint (its `total`) against the same work in-process,
        # and the rest (the client, the socket, uvicorn, the middleware and FastAPI's routing), request by request.
        out["endpoint_p50_ms"] = round(float(np.median(endpoint)), 2)
        out["outside_endpoint_p50_ms"] = round(float(np.median(np.subtract(timed["http"], endpoint))), 2)
    if peer:
        out["peer"], out["peer_p50_ms"] = peer[0], round(p50["peer"], 2)
    return out


def server_total_ms(header: str) -> float:
    """The `total` stage of a `Server-Timing` header (`read;dur=0.1, ..., total;dur=17.9`); NaN without one."""
    for entry in header.split(","):
        name, _, duration = entry.strip().partition(";dur=")
        if name == "total":
            return float(duration)
    return float("nan")


class LeanClient:
    """One keep-alive connection from the standard library's `http.client`, posting a JPEG as the body: the least a
    Python client adds (httpx builds and checks far more per request; measured on the Intel VM: 1.7 against 0.8 ms
    of the client's CPU a request). Reconnects once where the server closed an idle connection. Also what
    `benchmarks.side_by_side` posts with."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._conn: http.client.HTTPConnection | None = None

    def post_jpeg(self, data: bytes) -> float:
        """Post `data`; the answer's `Server-Timing` total in ms (NaN without one)."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self._address, timeout=60)
            try:
                self._conn.request("POST", "/predict", body=data, headers={"Content-Type": "image/jpeg"})
                response = self._conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise BenchmarkInputError(f"POST /predict from http.client answered {response.status}")
            return server_total_ms(response.getheader("Server-Timing") or "")
        raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/model.onnx"), help="our FP32 ONNX (any size)")
    p.add_argument("--weights", type=Path, help="its Ultralytics .pt (default: best.pt beside the model)")
    p.add_argument("--data", type=Path, help="YOLO dataset for INT8 calibration (default: data/<its version>)")
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--threads", type=int, default=0, help="threads per runner (default: usable cores)")
    p.add_argument("--max-seconds", type=float, default=6.0, help="per runner, in-process")
    p.add_argument("--http-rounds", type=int, default=3)
    # 150 per 4 clients: a cell of 60 (about a second at c=4 here) measured 53 req/s where 8 s blocks of the same
    # service measured 65 (2026-12-05, 2-core AMD EPYC).
    p.add_argument("--http-requests", type=int, default=150, help="most requests per HTTP cell, per 4 clients")
    p.add_argument(
        "--http-levels",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=HTTP_LEVELS,
        help="client concurrencies, comma-separated (default 1,4,8,16)",
    )
    p.add_argument("--http-seconds", type=float, default=6.0, help="most seconds per HTTP cell")
    p.add_argument("--no-http", action="store_true")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/benchmarks"))
    p.add_argument("--out-dir", type=Path, default=Path("reports"))
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _runner_specs(
    fp32: Path, int8: Path, ov_fp32: Path, ov_int8: Path, size: int, threads: int, image: Image_
) -> dict[str, Any]:
    """name -> a function that loads the runner (loaded only when its backend runs here)."""
    specs: dict[str, Any] = {
        "ours openvino fp32": lambda: DetectorRunner("openvino", fp32, threads, name="ours openvino fp32"),
        "ours openvino int8": lambda: DetectorRunner("openvino", int8, threads, name="ours openvino int8"),
        "ours openvino fp32, dynamic shape (before)": lambda: DetectorRunner(
            "openvino", fp32, threads, name="dynamic", openvino=OpenVinoConfig(shape_cache=0)
        ),
        "ours openvino bf16": lambda: DetectorRunner(
            "openvino", fp32, threads, name="bf16", openvino=OpenVinoConfig(precision="bf16")
        ),
        "ours onnxruntime fp32": lambda: DetectorRunner("onnxruntime", fp32, threads, name="ort"),
        "ours onnxruntime int8": lambda: DetectorRunner("onnxruntime", int8, threads, name="ort-int8"),
        ULTRALYTICS_ONNX: lambda: UltralyticsRunner(ULTRALYTICS_ONNX, fp32, size, threads),
        ULTRALYTICS_OPENVINO: lambda: UltralyticsRunner(ULTRALYTICS_OPENVINO, ov_fp32, size, threads),
        ULTRALYTICS_OPENVINO_INT8: lambda: UltralyticsRunner(ULTRALYTICS_OPENVINO_INT8, ov_int8, size, threads),
        ULTRALYTICS_OPENVINO_F32: lambda: force_openvino_f32(
            UltralyticsRunner(ULTRALYTICS_OPENVINO, ov_fp32, size, threads), image
        ),
    }
    status = backends.available()
    if status.get("tensorrt") == "":  # a GPU host: TensorRT FP16 joins (INT8 engines: see README)
        specs["ours tensorrt fp16"] = lambda: DetectorRunner("tensorrt", fp32, threads, "fp16", name="trt")
    if status.get("openvino"):
        specs = {k: v for k, v in specs.items() if "openvino" not in k}
    return specs


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or usable_cores()
    weights = args.weights or args.model.parent / "best.pt"
    try:
        meta = read_onnx_metadata(args.model)
    except DetectorError as exc:
        raise BenchmarkInputError(f"model {args.model}: {exc}") from exc
    data_dir = args.data or Path("data") / (meta.dataset_version or "v1")
    for path, what in ((weights, "weights"), (data_dir / "images" / "train", "calibration images")):
        if not path.exists():
            raise BenchmarkInputError(f"{what} not found: {path}")
    photos = peer_photos()
    jpegs = [p[2] for p in photos]
    log.info("preparing models at %d px in %s", args.size, args.cache_dir)
    fp32 = args.model if meta.imgsz[0] == args.size else export_variant(weights, args.size, args.cache_dir)
    int8 = our_int8(fp32, data_dir, args.cache_dir)
    ov_fp32 = ultralytics_openvino(weights, args.size, False, data_dir, args.cache_dir)
    ov_int8 = ultralytics_openvino(weights, args.size, True, data_dir, args.cache_dir)
    report: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks.peers", *sys.argv[1:]],
        "machine": machine_info(),
        "libraries": library_versions(),
        "threads": threads,
        "size": args.size,
        "images": [f"{name} {img.shape[1]}x{img.shape[0]}" for name, img, _ in photos],
        "models": {
            "fp32": str(fp32),
            "int8": str(int8),
            "ultralytics_openvino": str(ov_fp32),
            "ultralytics_openvino_int8": str(ov_int8),
        },
        "errors": [],
        # Ultralytics compiles its OpenVINO models without a precision hint, so they compute in OpenVINO's default:
        # bf16 on CPUs with AVX512_BF16/AMX. Ours is f32 unless `inference.openvino.precision=bf16`.
        "openvino_default_precision": _openvino_default_precision(),
    }
    runners: dict[str, Runner] = {}
    for name, load in _runner_specs(fp32, int8, ov_fp32, ov_int8, args.size, threads, photos[0][1]).items():
        try:
            runners[name] = load()
        except Exception as exc:  # a runner that cannot load is reported, the others still run
            report["errors"].append(f"{name}: load: {type(exc).__name__}: {exc}")
    budget = Budget(warmup=2, min_iters=6, max_iters=400, max_seconds=args.max_seconds, block=3, settle=True)
    try:
        samples, errors = in_process(runners, photos, budget)
    finally:
        for runner in runners.values():
            runner.close()
    report["errors"] += [f"{n}: {e}" for n, e in errors.items()]
    report["in_process"] = {n: summarize(s.end_to_end, 1) for n, s in samples.items() if s.end_to_end}
    if not args.no_http:
        # The afternoon service is written on the export a user would pick: the faster one here.
        fastest = fastest_peer(report["in_process"])
        on_fp32 = fastest == ULTRALYTICS_OPENVINO
        report["afternoon_service_export"] = "fp32 (OpenVINO's default precision)" if on_fp32 else "int8"
        peer_label = "afternoon service, Ultralytics OpenVINO " + ("FP32 export" if on_fp32 else "INT8")
        with (
            local_service(int8, "openvino", threads) as ours,
            afternoon_service(ov_fp32 if on_fp32 else ov_int8, args.size) as peer,
        ):
            services = {"ours, INT8 model, openvino": ours, peer_label: peer}
            report["http"] = http_pairs(
                services, jpegs, args.http_rounds, args.http_requests, args.http_seconds, args.http_levels
            )
            local = DetectorRunner("openvino", int8, threads, name="ours openvino int8")
            bar = None
            if fastest:  # the bar, loaded again (the in-process phase's runners are closed)
                path = ov_int8 if fastest == ULTRALYTICS_OPENVINO_INT8 else ov_fp32
                bar = UltralyticsRunner(fastest, path, args.size, threads)
            try:
                calls = [ours_from_jpeg(local, data) for data in jpegs]
                theirs = (bar.name + FROM_JPEG, [ultralytics_from_jpeg(bar, d) for d in jpegs]) if bar else None
                report["http_overhead"] = http_overhead(ours, calls, jpegs, rounds=4 * args.http_rounds, peer=theirs)
            finally:
                local.close()
                if bar:
                    bar.close()
    report["ratios"] = ratios(report)
    return report


def _openvino_default_precision() -> str:
    try:
        import openvino as ov

        return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    except Exception:  # no OpenVINO here: nothing to report
        return "n/a"


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    p50 = {n: s["p50_ms"] for n, s in report.get("in_process", {}).items()}
    http = {(c["service"].split(",")[0], c["concurrency"]): c for c in report.get("http", [])}

    def r(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    out = {
        "ours ov fp32 / ultralytics ov fp32 (target <= 0.9)": r(
            p50.get("ours openvino fp32"), p50.get(ULTRALYTICS_OPENVINO)
        ),
        "ours ov fp32 / ultralytics ov fp32 forced to f32 (same compute precision)": r(
            p50.get("ours openvino fp32"), p50.get(ULTRALYTICS_OPENVINO_F32)
        ),
        "ours ov int8 / ultralytics ov int8": r(p50.get("ours openvino int8"), p50.get(ULTRALYTICS_OPENVINO_INT8)),
        "ours ov bf16 / ultralytics ov fp32 (same compute precision where the default is bf16)": r(
            p50.get("ours openvino bf16"), p50.get(ULTRALYTICS_OPENVINO)
        ),
        "ours ov fp32 static / dynamic": r(
            p50.get("ours openvino fp32"), p50.get("ours openvino fp32, dynamic shape (before)")
        ),
    }
    out["ours ov int8 / ultralytics ov int8, both from JPEG bytes"] = r(
        p50.get("ours openvino int8" + FROM_JPEG), p50.get(ULTRALYTICS_OPENVINO_INT8 + FROM_JPEG)
    )
    ours, peer = http.get(("ours", 1)), http.get(("afternoon service", 1))
    if ours and peer:
        out["http c=1 p50: ours int8 / ultralytics ov int8 in-process from JPEG (target <= 1.0)"] = r(
            ours["p50_ms"], p50.get(ULTRALYTICS_OPENVINO_INT8 + FROM_JPEG)
        )
        out["http c=1 p50: ours int8 / ultralytics ov int8 in-process on decoded arrays (stricter)"] = r(
            ours["p50_ms"], p50.get(ULTRALYTICS_OPENVINO_INT8)
        )
        out["http c=1 p50: ours / afternoon service (target <= 1.0)"] = r(ours["p50_ms"], peer["p50_ms"])
        # Ultralytics' faster OpenVINO path here (its FP32 export computes in bf16 where the CPU has it: on AMX it
        # matches its INT8), from the JPEG bytes as a service starts; the key says which. The same on decoded arrays
        # (no decode in theirs) is the stricter line after it.
        # The target's own line is the interleaved one (below); these two take the bar from the in-process phase.
        for where, suffix in (("from JPEG", FROM_JPEG), ("on decoded arrays", "")):
            fastest = fastest_peer(report.get("in_process", {}), suffix)
            if fastest:
                note = "(across the run's phases)" if suffix else "(stricter)"
                kind = PEER_PATHS[fastest]
                key = f"http c=1 p50: ours int8 / ultralytics' fastest ov in-process ({kind} {where}) {note}"
                out[key] = r(ours["p50_ms"], p50[fastest + suffix])
        targets = {4: " (target >= 1.3)", 8: " (target >= 1.6)"}
        for level in sorted({c for _, c in http} - {1}):
            ours_c, peer_c = http.get(("ours", level)), http.get(("afternoon service", level))
            if ours_c and peer_c:
                out[f"http c={level} throughput: ours / afternoon service{targets.get(level, '')}"] = r(
                    ours_c["throughput_rps"], peer_c["throughput_rps"]
                )
    overhead = report.get("http_overhead")
    if overhead:
        if overhead.get("peer_p50_ms"):
            kind = PEER_PATHS.get(str(overhead.get("peer", "")).removesuffix(FROM_JPEG), "?")
            key = f"http c=1 p50: ours int8 / ultralytics' fastest ov in-process ({kind} from JPEG), interleaved"
            out[key + " (target <= 0.85)"] = r(overhead["http_p50_ms"], overhead["peer_p50_ms"])
            if overhead.get("http_raw_p50_ms"):
                out[key.replace("http c=1", "http c=1 raw body")] = r(
                    overhead["http_raw_p50_ms"], overhead["peer_p50_ms"]
                )
        out["http overhead c=1 ms: ours http - ours in-process from JPEG, interleaved (target <= 2)"] = overhead[
            "overhead_ms"
        ]
        if overhead.get("overhead_raw_ms") is not None:
            out["http overhead c=1 ms, the JPEG as the body (image/jpeg)"] = overhead["overhead_raw_ms"]
        if overhead.get("overhead_lean_ms") is not None:
            out["http overhead c=1 ms, the JPEG as the body from http.client (a leaner client)"] = overhead[
                "overhead_lean_ms"
            ]
    return out


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Peers benchmark ({report['created']})",
        "",
        machine_line(report)
        + f"{report['size']} px, batch 1; images: {', '.join(report['images'])}. OpenVINO's default CPU precision "
        f"here (what Ultralytics' OpenVINO runners compute in): {report.get('openvino_default_precision', '?')}.",
        f"Command: `{' '.join(report['command'])}`",
        "",
        "| runner (in-process, same weights) | p50 ms | p90 ms | n |",
        "|---|---:|---:|---:|",
    ]
    for name, s in sorted(report.get("in_process", {}).items(), key=lambda kv: kv[1]["p50_ms"]):
        lines.append(f"| {name} | {s['p50_ms']:.1f} | {s.get('p90_ms', float('nan')):.1f} | {s.get('n', '')} |")
    if report.get("http"):
        lines += [
            "",
            "| service, HTTP `POST /predict` multipart | concurrency | p50 ms | req/s | errors |",
            "|---|---:|---:|---:|---:|",
        ]
        for c in report["http"]:
            lines.append(
                f"| {c['service']} | {c['concurrency']} | {c['p50_ms']} | {c['throughput_rps']} | {c['errors']} |"
            )
    if report.get("http_overhead"):
        o = report["http_overhead"]
        lines += [
            "",
            f"HTTP overhead, interleaved blocks of 10 (n={o['n']} each): HTTP c=1 p50 {o['http_p50_ms']} ms, the same "
            f"work in-process (decode + detect) {o['in_process_p50_ms']} ms: **{o['overhead_ms']} ms**."
            + (
                f" The JPEG as the body (`image/jpeg`): {o['http_raw_p50_ms']} ms, **{o['overhead_raw_ms']} ms**."
                if o.get("http_raw_p50_ms")
                else ""
            )
            + (
                f" The same body from the standard library's `http.client` instead of httpx: {o['http_lean_p50_ms']}"
                f" ms, **{o['overhead_lean_ms']} ms** (the rest of the difference is httpx's own work)."
                if o.get("http_lean_p50_ms")
                else ""
            )
            + (
                f" Of the multipart requests' time, the service's endpoint took {o['endpoint_p50_ms']} ms"
                f" (`Server-Timing` total; {o['endpoint_p50_ms'] - o['in_process_p50_ms']:.2f} ms over the same"
                f" work in-process) and the rest {o['outside_endpoint_p50_ms']} ms (the client, the socket, uvicorn,"
                " the middleware and FastAPI's routing, both ways)."
                if o.get("endpoint_p50_ms")
                else ""
            )
            + (f" In the same blocks, {o['peer']}: {o['peer_p50_ms']} ms." if o.get("peer_p50_ms") else "")
            + (
                f" One hand-off from an event loop to a thread and back costs {hop} us here (the service makes two a"
                " request: to the decode pool, to the model thread)."
                if (hop := report["machine"].get("thread_round_trip_us"))
                else ""
            ),
        ]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in report["ratios"].items()]
    if report["errors"]:
        lines += ["", "Errors:", *[f"- {e}" for e in report["errors"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        report = run(args)
    except (BenchmarkInputError, DetectorError) as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    write_atomic(args.out_dir / "peers.json", json.dumps(report, indent=2) + "\n")
    write_atomic(args.out_dir / "peers.md", to_markdown(report))
    print((args.out_dir / "peers.md").read_text())
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
