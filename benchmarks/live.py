"""`python -m benchmarks.live`: a live camera answered while it streams. Ours (the loop of `detector predict URL`,
`detector.runtime.live_detect.detect_live`) against Ultralytics' `YOLO(openvino INT8 export).predict(source=URL,
stream=True)` (its stream loader, which keeps the newest frame, `buffer=False`), same weights, same precision, the
same camera; writes reports/live.{json,md}.

The camera is an HTTP MJPEG stream on loopback (what IP cameras serve): the "real" clip of benchmarks/video.py,
1280x720 at 30 fps, each frame a JPEG (quality 85) carrying its own number as a barcode, sent at the camera's pace
to the first client only (`--camera mjpeg-unsized`: its parts without their Content-Length, as Flask-style cameras
send them). It notes when it sent each frame. A runner, a process of its own (so the CPU it reports is
its own), answers frames until the stream ends; an answer's latency is when it was answered minus when the camera
sent that frame: the frame's age at its answer, waiting included. Reported per runner: frames answered per second,
latency p50 / p95, and the cores it kept busy. No tracking on either side. Runners take turns in rotating order,
`--rounds` times; a cell is the median of its rounds.

With `--camera rtsp` the camera is an RTSP one sending the same stamped frames as H.264 (x264 `veryfast`,
`zerolatency`: no B-frames, as cameras send) in RTP over the RTSP connection (`--camera rtsp-h265`: as H.265, x265
`ultrafast`, `zerolatency`); `--camera rtmp` sends it from an RTMP
server in FLV video messages (video only, as many cameras and drones push it); `--camera h264` sends it in MPEG-TS
over TCP. `--fps` makes the camera faster than 30 fps (the clip shown faster). With `--cameras N`, N such
cameras at once (each its own server, the same frames): ours answers them in one process on one model
(`detector predict URL URL...`, `detect_cameras`), Ultralytics with its loader over a `.streams` file of the N URLs
(a batch of the N newest frames a call); frames/s are then per camera.

    python -m benchmarks.live --model models/model.onnx [--sizes 640] [--rounds 3] [--seconds 20]
        [--camera mjpeg|mjpeg-unsized|rtsp|rtsp-h265|rtmp|h264] [--fps 60] [--cameras 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.cameras import (
    MjpegCamera,
    RtmpCamera,
    RtspCamera,
    TsCamera,
    UnsizedMjpegCamera,
    h264_frames,
    h265_frames,
    ts_chunks,
)
from benchmarks.inputs import export_variant
from benchmarks.machine import machine_info, machine_line, usable_cores
from benchmarks.peers import our_int8, ultralytics_openvino
from benchmarks.video import FPS, real_clip
from detector.files import write_atomic
from detector.runtime.metadata import read_onnx_metadata

log = logging.getLogger("benchmarks")
BITS, BLOCK = 12, 16  # the frame number: 12 bits, each a 16 px block and its complement beside it


def stamp(bgr: np.ndarray, number: int) -> np.ndarray:
    """`bgr` with `number` drawn as a barcode along its top-left edge (survives JPEG)."""
    out = bgr.copy()
    for bit in range(BITS):
        on = (number >> bit) & 1
        x = bit * 2 * BLOCK
        out[:BLOCK, x : x + BLOCK] = 255 * on
        out[:BLOCK, x + BLOCK : x + 2 * BLOCK] = 255 * (1 - on)
    return out


def read_stamp(bgr: np.ndarray) -> int | None:
    """The number `stamp` drew, or None where there is none (a blank frame Ultralytics' loader makes up)."""
    number = 0
    inner = slice(BLOCK // 4, BLOCK - BLOCK // 4)
    for bit in range(BITS):
        x = bit * 2 * BLOCK
        on = bgr[inner, x : x + BLOCK][:, inner].mean() > 128
        off = bgr[inner, x + BLOCK : x + 2 * BLOCK][:, inner].mean() > 128
        if on == off:
            return None
        number |= int(on) << bit
    return number


def _stamped(clip: Path, count: int) -> Iterator[np.ndarray]:
    """The first `count` frames of `clip` (BGR), each stamped with its number."""
    cap = cv2.VideoCapture(str(clip))
    try:
        for number in range(count):
            ok, frame = cap.read()
            if not ok:
                return
            yield stamp(frame, number)
    finally:
        cap.release()


def camera_frames(clip: Path, count: int) -> list[bytes]:
    """The first `count` frames of `clip` as stamped JPEGs (quality 85)."""
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for f in _stamped(clip, count)]


def h264_chunks(clip: Path, count: int, fps: float) -> list[bytes]:
    """The first `count` frames of `clip`, stamped, as H.264 in MPEG-TS (`ts_chunks`: x264 `zerolatency`, no
    B-frames, as cameras send), one chunk of bytes per frame."""
    return ts_chunks(_stamped(clip, count), fps)


def rtsp_frames(clip: Path, count: int, fps: float) -> list[list[bytes]]:
    """The first `count` frames of `clip`, stamped, as an RTSP camera's H.264 (`h264_frames`): NAL units a frame."""
    return h264_frames(_stamped(clip, count), fps)


def rtsp_h265_frames(clip: Path, count: int, fps: float) -> list[list[bytes]]:
    """The same as an RTSP camera's H.265 (`h265_frames`: x265 `ultrafast`, `zerolatency`, one slice a picture)."""
    return h265_frames(_stamped(clip, count), fps)


def mjpeg_frames(clip: Path, count: int, _fps: float) -> list[bytes]:
    """An HTTP MJPEG camera's JPEGs (`camera_frames`), with or without their parts' Content-Length."""
    return camera_frames(clip, count)


CAMERAS: dict[str, Callable[[Path, int, float], list[Any]]] = {
    "mjpeg": mjpeg_frames,
    "mjpeg-unsized": mjpeg_frames,
    "rtsp": rtsp_frames,
    "rtsp-h265": rtsp_h265_frames,
    "rtmp": rtsp_frames,  # the same H.264 frames, in FLV video messages
    "h264": h264_chunks,
}


Answer = tuple[int, int, float]  # the camera's place, the frame's number (its stamp), when it was answered


def load_ours(urls: list[str], model: Path, threads: int) -> Callable[[], list[Answer]]:
    """Our model loaded and warmed up; the returned call answers the cameras until their streams end."""
    from detector.config import OpenVinoConfig
    from detector.runtime import BackendOptions, Detector
    from detector.runtime.live_detect import Reading, detect_cameras, detect_live

    # configs/inference.yaml's `hint: auto`, as `detector predict URL` loads it (a single frame: the latency model)
    det = Detector.load(model, "openvino", BackendOptions(threads=threads, openvino=OpenVinoConfig(hint="auto")))
    det.predict(np.zeros((720, 1280, 3), np.uint8))

    def go() -> list[Answer]:
        answers: list[Answer] = []
        if len(urls) == 1:
            on_frame = lambda number, _t, _d, _i: answers.append((0, number, time.time()))  # noqa: E731
            detect_live(det, urls[0], on_frame=on_frame)
        else:
            on_camera = lambda camera, number, _t, _d, _i: answers.append((camera, number, time.time()))  # noqa: E731
            readings = [Reading()] * len(urls)
            detect_cameras(det, urls, saves=[None] * len(urls), readings=readings, on_frame=on_camera)
        return answers

    return go


def load_ultralytics(urls: list[str], model: Path, size: int, folder: Path) -> Callable[[], list[Answer]]:
    """Ultralytics' model loaded and warmed up; the returned call answers the cameras until their streams end
    (several: its loader over a `.streams` file of the URLs, written in `folder`)."""
    import os

    from ultralytics import YOLO
    from ultralytics.utils import ops

    yolo = YOLO(str(model), task="detect")
    yolo.predict(np.zeros((720, 1280, 3), np.uint8), imgsz=size, verbose=False)
    source = urls[0]
    if len(urls) > 1:
        source = str(folder / "cameras.streams")
        Path(source).write_text("\n".join(urls) + "\n")
    names = [ops.clean_str(url).replace(os.sep, "_") for url in urls]  # how its loader names each source

    def go() -> list[Answer]:
        answers: list[Answer] = []
        for result in yolo.predict(source=source, stream=True, imgsz=size, conf=0.25, verbose=False):
            number = read_stamp(result.orig_img)
            if number is not None:  # not a blank frame its loader made up when the stream ended
                answers.append((names.index(result.path) if len(urls) > 1 else 0, number, time.time()))
        return answers

    return go


def runner_main(args: argparse.Namespace) -> None:
    """One runner in this process: loads, then answers the camera at `--url` until its stream ends, and writes the
    answers and the CPU it used while answering (loading not counted)."""
    if args.kind == "ours":
        go = load_ours(args.url, args.runner_model, args.threads)
    else:
        go = load_ultralytics(args.url, args.runner_model, args.size, args.out.parent)
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    answers = go()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    args.out.write_text(json.dumps({"answers": answers, "cpu_s": cpu, "wall_s": wall}))


def camera_for(kind: str, chunks: list[Any], fps: float) -> MjpegCamera | RtspCamera | RtmpCamera | TsCamera:
    """A camera of that kind (`CAMERAS`) sending `chunks` at `fps`, once (a reconnecting reader gets no second run)."""
    if kind == "mjpeg":
        return MjpegCamera(chunks, fps, once=True)
    if kind == "mjpeg-unsized":
        return UnsizedMjpegCamera(chunks, fps, once=True)
    if kind in ("rtsp", "rtsp-h265"):
        return RtspCamera(chunks, fps, once=True, codec="h265" if kind == "rtsp-h265" else "h264")
    if kind == "rtmp":
        return RtmpCamera(chunks, fps, once=True)
    return TsCamera(chunks, fps)


def one_round(
    kind: str,
    model: Path,
    size: int,
    threads: int,
    chunks: list[Any],
    fps: float = FPS,
    camera_kind: str = "mjpeg",
    cameras: int = 1,
) -> dict[str, float]:
    """`cameras` fresh cameras at `fps` (`camera_kind`, and `chunks` from its `CAMERAS` entry: "mjpeg", HTTP MJPEG
    of these JPEGs ("mjpeg-unsized": without each part's Content-Length); "rtsp", RTSP of these H.264 frames
    ("rtsp-h265": H.265); "rtmp", RTMP of them; "h264", MPEG-TS over TCP of these chunks), one runner process against
    them; its cell for this round (frames/s per camera)."""
    started = [camera_for(camera_kind, chunks, fps) for _ in range(cameras)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answers.json"
        cmd = [sys.executable, "-m", "benchmarks.live", "runner", "--kind", kind]
        for camera in started:
            cmd += ["--url", camera.url]
        cmd += ["--runner-model", str(model), "--size", str(size), "--threads", str(threads), "--out", str(out)]
        try:
            subprocess.run(cmd, check=True, timeout=len(chunks) / fps + 300, stdout=subprocess.DEVNULL)
        finally:
            for camera in started:
                camera.close()
        got = json.loads(out.read_text())
    answers = [(c, n, t) for c, n, t in got["answers"] if 0 <= n < len(started[c].sent)]
    ages = [(t - started[c].sent[n]) * 1e3 for c, n, t in answers]
    seconds = len(chunks) / fps
    return {
        "answered_per_s": len(answers) / seconds / cameras,
        "answered_share": len(answers) / len(chunks) / cameras,
        "latency_p50_ms": statistics.median(ages),
        "latency_p95_ms": float(np.percentile(ages, 95)),
        # The process's CPU while it answered, over that time: the cores it kept busy.
        "cores_busy": got["cpu_s"] / got["wall_s"],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or usable_cores()
    weights = args.weights or args.model.parent / "best.pt"
    meta = read_onnx_metadata(args.model)
    data_dir = args.data or Path("data") / (meta.dataset_version or "v1")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    clip = real_clip(args.cache_dir / "clip-real-30s.mp4", 30)
    count = round(args.seconds * args.fps)  # a faster camera shows the clip faster
    chunks = CAMERAS[args.camera](clip, count, args.fps)
    cells: dict[tuple[int, str], list[dict[str, float]]] = {}
    for size in args.sizes:
        fp32 = args.model if meta.imgsz[0] == size else export_variant(weights, size, args.cache_dir)
        theirs = ultralytics_openvino(weights, size, True, data_dir, args.cache_dir)
        runners = {
            "ours (detector predict URL)": ("ours", our_int8(fp32, data_dir, args.cache_dir)),
            "ultralytics predict(stream)": ("ultralytics", theirs),
        }
        names = list(runners)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                kind, model = runners[name]
                cell = one_round(kind, model, size, threads, chunks, args.fps, args.camera, args.cameras)
                cells.setdefault((size, name), []).append(cell)
                log.info("%d px %s: %s", size, name, {k: round(v, 2) for k, v in cell.items()})
    rows = []
    for (size, name), rounds in cells.items():
        row: dict[str, Any] = {"size": size, "runner": name}
        for key in rounds[0]:
            row[key] = round(statistics.median(c[key] for c in rounds), 3)
        row["rounds"] = rounds
        rows.append(row)
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks.live", *sys.argv[1:]],
        "machine": machine_info(),
        "threads": threads,
        "camera": {
            "mjpeg": "HTTP MJPEG on loopback, JPEG quality 85",
            "mjpeg-unsized": "HTTP MJPEG on loopback, JPEG quality 85, parts without Content-Length",
            "rtsp": "RTSP on loopback, H.264 (x264 veryfast, zerolatency, a key frame a second) in RTP over TCP",
            "rtsp-h265": "RTSP on loopback, H.265 (x265 ultrafast, zerolatency, a key frame a second) in RTP over TCP",
            "rtmp": "RTMP on loopback, H.264 (x264 veryfast, zerolatency, a key frame a second), video only",
            "h264": "H.264 (x264 veryfast, zerolatency, a key frame a second) in MPEG-TS over TCP on loopback",
        }[args.camera]
        + f", 1280x720 at {args.fps:g} fps, {args.seconds} s ({clip.name})"
        + (f"; {args.cameras} such cameras at once" if args.cameras > 1 else ""),
        "cameras": args.cameras,
        "rows": rows,
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Live camera benchmark ({report['created']})",
        "",
        machine_line(report) + f"OpenVINO INT8 on both sides, no tracking. Camera: {report['camera']}.",
        f"Command: `{' '.join(report['command'])}`",
        "",
        "| size | runner | answered frames/s (a camera) | share answered | latency p50 (ms) | latency p95 (ms) "
        "| cores busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['size']} | {r['runner']} | {r['answered_per_s']:.1f} | {r['answered_share']:.0%} | "
            f"{r['latency_p50_ms']:.1f} | {r['latency_p95_ms']:.1f} | {r['cores_busy']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="measure", choices=["measure", "runner"], help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, default=Path("models/model.onnx"), help="our FP32 ONNX model")
    p.add_argument("--weights", type=Path, help="its .pt (default: best.pt beside it), for Ultralytics' export")
    p.add_argument("--data", type=Path, help="calibration data for both INT8 models (default: the model's dataset)")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[640])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=20, help="the camera's stream length (at most 30)")
    p.add_argument("--fps", type=float, default=FPS, help="the camera's frame rate (a faster one than the detectors)")
    p.add_argument(
        "--camera",
        choices=list(CAMERAS),
        default="mjpeg",
        help="HTTP MJPEG (IP cameras; mjpeg-unsized: parts without Content-Length), RTSP with H.264 (or H.265: "
        "rtsp-h265) in RTP over TCP, RTMP with H.264, or H.264 in MPEG-TS over TCP",
    )
    p.add_argument("--cameras", type=int, default=1, help="that many cameras at once, answered by one process")
    p.add_argument("--threads", type=int, default=0, help="our inference threads (default: the usable cores)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/benchmarks"))
    p.add_argument("--out-dir", type=Path, default=Path("reports"))
    # The runner process's own arguments.
    p.add_argument("--kind", choices=["ours", "ultralytics"], help=argparse.SUPPRESS)
    p.add_argument("--url", action="append", help=argparse.SUPPRESS)
    p.add_argument("--runner-model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=640, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a manual benchmark
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.mode == "runner":
        runner_main(args)
        return 0
    if not 1 <= args.seconds <= 30 or not 1 <= args.seconds * args.fps <= 30 * FPS:
        raise SystemExit(f"--seconds x --fps must be at most the clip's {30 * FPS} frames (--seconds 1-30)")
    report = measure(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out_dir / "live.json", json.dumps(report, indent=2) + "\n")
    write_atomic(args.out_dir / "live.md", to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
