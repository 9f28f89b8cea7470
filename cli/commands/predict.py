"""`detector predict IMAGE|FOLDER...` (JSON, one result per image), `detector predict CLIP.mp4 --save out.mp4`
(annotated video, optional tracking, one JSON line per processed frame) and `detector predict rtsp://... [rtsp://...]`
(live streams, the newest frame of each, again and again, until they end or Ctrl-C)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cli.main import Commands
from cli.output import print_json
from cli.wiring import engine_builder
from detector.config import BACKEND_CHOICES, Config
from detector.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from detector.runtime.live_recording import LineFiles, Saving, Segment, Segmenting
    from detector.runtime.tiling import Tiling

DEFAULT_TIMEOUT_S = 10.0  # a live stream: the longest wait to connect, then for data
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".mpo")  # what a folder is searched for


def cmd_predict(args: argparse.Namespace, config: Config) -> None:
    from detector.runtime import BackendOptions, Detector

    inf = config.inference
    model = args.model or inf.model_path
    backend = args.backend or inf.backend
    live = _live_sources(args)
    paths = [Path(source) for source in args.images]
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES] if live is None else []
    if videos and len(args.images) > 1:
        raise InvalidInputError("give one video at a time (or only images)")
    if not videos and live is None and (args.save or args.jsonl or args.track or args.vid_stride != 1):
        raise InvalidInputError("--save, --jsonl, --track and --vid-stride apply to a video input (.mp4, .avi, ...)")
    if args.vid_stride < 1:
        raise InvalidInputError(f"--vid-stride must be at least 1 (got {args.vid_stride})")
    # What is read and written is checked before the model loads: a typo fails in a moment, not after it.
    if videos:
        from detector.runtime.video import check_outputs

        if not videos[0].is_file():
            raise InvalidInputError(f"video not found: {videos[0]}")
        check_outputs(videos[0], args.save, _lines_file(args))  # before either is opened (truncated)
    images = [] if videos or live is not None else _image_paths(paths)
    tiling = None
    if args.tile:
        from detector.runtime.tiling import Tiling

        t = inf.tiling
        tiling = Tiling.parse(args.tile, args.overlap, t.merge, t.match_threshold, t.full_image)
    options = BackendOptions.from_config(config, engine_builder=engine_builder())
    if videos:
        options = options.for_clip()  # a clip's frames never run out: `hint: auto` runs one on each stream at once
    loaded = Detector.load(
        model,
        backend,
        options,
        conf=inf.conf,
        iou=inf.iou,
        max_det=inf.max_det,
        rect=inf.rect,
        class_thresholds=inf.class_thresholds,
    )
    with loaded as det, _stop_on_sigterm():
        if args.conf_per_class is not None:  # checked against the model's classes before any image is read
            from detector.runtime.classes import parse_class_conf

            args.conf_per_class = parse_class_conf(args.conf_per_class, det.metadata.names)
        if live is not None:
            _predict_live(det, live, args, tiling)
        elif videos:
            _print_summary(args, _predict_video(det, videos[0], args, tiling))
        else:
            results = _predict_images(det, images, args, inf.server.max_pixels, tiling)
            print_json(results)
            failed = [r for r in results if "error" in r]
            if failed:  # every other image is answered above; the exit status says the run was not clean
                raise InvalidInputError(
                    f"{len(failed)} of {len(results)} images failed, the first: {failed[0]['error']}"
                )


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (`docker stop`, systemd, a supervisor) stops the run as Ctrl-C does, so a recording being written is
    closed and playable: by default SIGTERM killed the process mid-write and left an MP4 without its index (no
    player opens it). A live run then prints its summary (ended: "stopped (SIGTERM)"); a clip's run exits 130."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _predict_images(
    det: Any, paths: list[Path], args: argparse.Namespace, max_pixels: int, tiling: Tiling | None = None
) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from api.schemas import PredictionResponse  # the /predict answer's shape, declared once
    from detector.runtime import Timings
    from detector.runtime.classes import filter_classes, parse_classes
    from detector.runtime.video import read_ahead

    info = det.describe()
    wanted = parse_classes(args.classes, det.metadata.names) if args.classes is not None else None
    out: list[dict[str, Any]] = []
    bar = tqdm(total=len(paths), unit="image", file=sys.stderr, disable=args.no_progress or len(paths) < 2)
    # The next images decode on a thread of their own while this one is detected (JPEG decoding releases the GIL):
    # 120 photos of 1920x1080 and 1080x1440, 640 px INT8 model, 2-core AMD EPYC: 5.1-5.3 s -> 4.7-4.9 s for the
    # command, about 2.8 s of it start-up (20 -> 17 ms an image).
    with bar:
        for path, image in read_ahead(_read_images(paths, max_pixels), depth=2):
            bar.update()
            if isinstance(image, InvalidInputError):  # this image's own entry; the others are answered
                out.append({"file": str(path), "error": str(image)})
                continue
            timings = Timings()
            try:
                result = det.predict(
                    image,
                    conf=args.conf,
                    iou=args.iou,
                    max_det=args.max_det,
                    conf_per_class=args.conf_per_class,
                    tiles=tiling,
                    timings=timings,
                )
            except InvalidInputError as exc:  # a tile larger than this image: its entry says so
                out.append({"file": str(path), "error": f"{path}: {exc}"})
                continue
            result = filter_classes(result, wanted)
            out.append({"file": str(path), **PredictionResponse.body(result, image.shape[:2], info, timings.as_dict())})
    return out


def _image_paths(given: list[Path]) -> list[Path]:
    """The images to detect, in order: files as given, and a folder's images (`IMAGE_SUFFIXES`, sorted by name, not
    its subfolders). A missing file or a folder without images stops the run before any image is read."""
    out: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidInputError(f"{path}: a folder without images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif not path.is_file():
            raise InvalidInputError(f"image not found: {path}")
        else:
            out.append(path)
    return out


def _read_images(
    paths: list[Path], max_pixels: int
) -> Iterator[tuple[Path, npt.NDArray[np.uint8] | InvalidInputError]]:
    """Each image decoded, or why it cannot be (not an image, damaged, over the pixel limit)."""
    from detector.runtime.images import read_image

    for path in paths:
        try:
            yield path, read_image(path, max_pixels)
        except InvalidInputError as exc:
            yield path, exc


def _lines_file(args: argparse.Namespace) -> Path | None:
    """--jsonl as a file to check against the other outputs; None without one, or for `-` (stdout)."""
    return None if args.jsonl is None or str(args.jsonl) == "-" else Path(args.jsonl)


@contextlib.contextmanager
def _frame_lines(args: argparse.Namespace, flush: bool, files: LineFiles | None = None) -> Iterator[Any]:
    """The `on_frame` that writes --jsonl's line for each detected frame (the /predict/video line's shape): into the
    file (created or emptied, closed at the end), or stdout for `-` (flushed line by line, for a pipe); with
    `flush`, a file's lines are flushed too (a live run is read while it goes: tail -f); with `files`, into the
    segment open at the line's `time_s` (a live run in segments). None without --jsonl. Its `camera` keyword puts
    the stream's place first in the line (several streams)."""
    from api.schemas import VideoFrame, ndjson  # the /predict/video line's shape, declared once

    if args.jsonl is None:
        yield None
        return
    stdout = str(args.jsonl) == "-"
    if files is None:
        out = sys.stdout if stdout else open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115 (closed below)

    lock = threading.Lock()  # several cameras' threads write lines

    def write(index: int, time_s: float, dets: Any, track_ids: list[int | None] | None, camera: int = -1) -> None:
        first = {"camera": camera} if camera >= 0 else {}  # several streams: which one the line is of, first
        line = ndjson({**first, **VideoFrame.body(index, time_s, dets, track_ids)}).decode()
        if files is not None:  # LineFiles locks for itself
            files.write(line, time_s)
            return
        with lock:
            out.write(line)
            if flush or stdout:
                out.flush()

    try:
        yield write
    finally:
        if files is not None:
            files.close()
        elif not stdout:
            out.close()


def _predict_options(args: argparse.Namespace) -> dict[str, Any]:
    """`Detector.predict`'s keyword arguments from the command line."""
    return {"conf": args.conf, "iou": args.iou, "max_det": args.max_det, "conf_per_class": args.conf_per_class}


def _print_summary(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """A video's summary on stdout; on stderr when stdout carries the lines (`--jsonl -`), so it stays NDJSON."""
    if str(args.jsonl) == "-":
        print(json.dumps(summary, default=str), file=sys.stderr)
    else:
        print_json(summary)


def _predict_video(det: Any, path: Path, args: argparse.Namespace, tiling: Tiling | None = None) -> dict[str, Any]:
    """Every frame that decodes is written to --save (same fps); every --vid-stride-th is detected (in tiles with
    --tile; the frames in between show the last detections, as Ultralytics' vid_stride does), tracked with --track,
    and logged (`detector.runtime.video_detect.detect_video`)."""
    from tqdm import tqdm

    from detector.runtime.classes import parse_classes
    from detector.runtime.video import probe_video
    from detector.runtime.video_detect import detect_video

    info = probe_video(path)
    wanted = parse_classes(args.classes, det.metadata.names) if args.classes is not None else None
    with (
        _frame_lines(args, flush=False) as log_frame,
        tqdm(total=info.frames or None, unit="frame", desc=path.name, file=sys.stderr, disable=args.no_progress) as bar,
    ):
        run = detect_video(
            det,
            path,
            info=info,
            vid_stride=args.vid_stride,
            track=args.track,
            save=Path(args.save) if args.save else None,
            classes=wanted,
            predict=_predict_options(args),
            tiles=tiling,
            on_frame=log_frame,
            on_progress=bar.update,
        )
    frames, processed = run.frames, run.processed
    return {
        "file": str(path),
        "frames": frames,
        "processed_frames": processed,
        "damaged_frames": list(run.damaged),  # skipped: their data could not be decoded (a warning says so too)
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "saved": str(args.save) if args.save else None,
        "jsonl": str(args.jsonl) if args.jsonl else None,
        "tracked": bool(args.track),
    }


class _Live(NamedTuple):
    urls: list[str]
    saves: list[Saving | None]  # each stream's recording (--save; several streams: camera-N.mp4 in that folder)
    lines: Segmenting | None  # --jsonl (a file) in segments (--segment), every stream's lines in one


def _live_sources(args: argparse.Namespace) -> _Live | None:
    """The live streams' URLs and recordings when the sources are streams (then streams only, without --vid-stride);
    None for files. A URL of another kind (file://, ftp://) is refused, naming the kinds read. --timeout,
    --max-frames, --reconnect, --segment and --keep need a stream; with several streams --save names a folder."""
    from detector.runtime.live import check_live, is_live
    from detector.runtime.live_recording import Saving, Segmenting
    from detector.runtime.video import check_outputs

    for source in args.images:
        check_live(source)
    live = [source for source in args.images if is_live(source)]
    if not live:
        if args.timeout is not None or args.max_frames or args.reconnect or args.segment or args.keep:
            raise InvalidInputError(
                "--timeout, --max-frames, --reconnect, --segment and --keep apply to a live stream (rtsp://, http://, "
                "...)"
            )
        return None
    if len(live) < len(args.images):
        raise InvalidInputError("give live streams only, or files only")
    if len(live) > 1 and args.save and Path(args.save).suffix.lower() in VIDEO_SUFFIXES:
        raise InvalidInputError(
            f"--save {args.save}: with several streams --save names a folder (each recorded as camera-N.mp4 in it)"
        )
    if args.vid_stride != 1:
        raise InvalidInputError(
            "--vid-stride applies to files: a live stream is read as fast as it is detected (the frames that arrive "
            "while one is detected are dropped)"
        )
    if args.timeout is not None and not 0 < args.timeout < math.inf:  # NaN too
        raise InvalidInputError(f"--timeout must be more than 0 seconds (got {args.timeout:g})")
    if args.max_frames < 0:
        raise InvalidInputError(f"--max-frames must be 0 (no limit) or more (got {args.max_frames})")
    lines_file = _lines_file(args)
    check_outputs(None, args.save, lines_file)
    if (args.segment or args.keep) and not (args.save or lines_file):
        raise InvalidInputError("--segment and --keep apply to a recording (--save) and to --jsonl (a file)")
    saves: list[Saving | None] = [None] * len(live)
    if args.save:  # made here: a bad name or value fails before the model loads
        paths = [Path(args.save) / f"camera-{i}.mp4" for i in range(len(live))] if len(live) > 1 else [args.save]
        saves = [Saving(path, args.segment or 0.0, args.keep or 0) for path in paths]
    lines = Segmenting(lines_file, args.segment, args.keep or 0) if lines_file and args.segment else None
    return _Live([str(url) for url in live], saves, lines)


def _predict_live(det: Any, live: _Live, args: argparse.Namespace, tiling: Tiling | None = None) -> None:
    """The newest frame of each stream, again and again, until it ends, --max-frames, or Ctrl-C
    (`detector.runtime.live_detect.detect_live`; several streams at once, one model: `detect_cameras`, each line
    with its stream's place as `camera`, each recording `camera-N.mp4` in the --save folder; with --reconnect a
    stream is opened again when it ends); prints the summary (several: one per stream under `cameras`), then fails
    (exit 2) if a stream stalled or broke off."""
    from tqdm import tqdm

    from detector.runtime.classes import parse_classes
    from detector.runtime.live import names_a_file, redact
    from detector.runtime.live_detect import Reading, detect_cameras, detect_live
    from detector.runtime.live_recording import LineFiles

    urls, saves, lines = live
    files = LineFiles(lines) if lines is not None else None
    several = len(urls) > 1
    readings = [
        Reading(
            timeout_s=args.timeout or DEFAULT_TIMEOUT_S,
            keep_all=names_a_file(url, VIDEO_SUFFIXES),  # http://host/clip.mp4: a file, every frame read
            reconnect=args.reconnect,
        )
        for url in urls
    ]
    options: dict[str, Any] = {
        "track": args.track,
        "classes": parse_classes(args.classes, det.metadata.names) if args.classes is not None else None,
        "predict": _predict_options(args),
        "tiles": tiling,
        "max_frames": args.max_frames,
    }
    desc = f"{len(urls)} streams" if several else redact(urls[0])
    with (
        _frame_lines(args, flush=True, files=files) as log_frame,
        tqdm(unit="frame", desc=desc, file=sys.stderr, disable=args.no_progress) as bar,
    ):
        if several:
            on_frame = None if log_frame is None else lambda camera, *answer: log_frame(*answer, camera=camera)
            runs = detect_cameras(
                det, urls, saves=saves, readings=readings, on_frame=on_frame, on_progress=bar.update, **options
            )
        else:
            only = detect_live(
                det, urls[0], save=saves[0], reading=readings[0], on_frame=log_frame, on_progress=bar.update, **options
            )
            runs = [only]
    summaries = [
        {
            "source": redact(url),
            "received_frames": run.received,
            "processed_frames": run.processed,
            "dropped_frames": run.dropped,  # arrived while an earlier frame was detected: never detected
            "damaged_frames": run.damaged,
            # As the stream declares it; or, for one that declares none (HTTP MJPEG), as the frames came.
            "fps": round(run.measured_fps, 2) if run.measured_fps else run.info.fps,
            "fps_measured": run.measured_fps is not None,
            "width": run.info.width,
            "height": run.info.height,
            "saved": str(save.path) if save else None,
            "written_frames": run.written,
            "jsonl": str(args.jsonl) if args.jsonl else None,
            "tracked": bool(args.track),
            "ended": run.ended,
            "reconnects": run.reconnects,
            # With --segment: the files on disk, each with its first frame's time (a line's `time_s` t is in the last
            # segment whose `from_s` <= t, at t - from_s into it).
            **({"segments": _segments(run.segments)} if save and save.segment_s else {}),
            # With --segment and --jsonl: the lines' files on disk, each with its first line's `time_s`.
            **({"jsonl_segments": _segments(files.rotation.kept())} if files is not None else {}),
        }
        for url, run, save in zip(urls, runs, saves, strict=True)
    ]
    _print_summary(args, {"cameras": summaries} if several else summaries[0])
    failed = [
        f"{summary['source']}: {run.ended} after {run.received} frames"
        for summary, run in zip(summaries, runs, strict=True)
        if not run.clean
    ]
    if failed:
        raise InvalidInputError("; ".join(failed))


def _segments(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    return [{"file": str(segment.path), "from_s": round(segment.from_s, 3)} for segment in segments]


def register(commands: Commands) -> None:
    p = commands.add(
        "predict",
        cmd_predict,
        "detect objects in images (prints a JSON list, one result per image) or in a video (--save, --jsonl)",
        positional_overrides=False,  # the images are positional
    )
    p.add_argument(
        "images",
        nargs="+",
        help="image files or folders of images, or one video file (.mp4, .avi, ...), or one live stream's URL "
        "(rtsp://, http://, tcp://, udp://, ...)",
    )
    p.add_argument("--model", help="ONNX file (default: inference.model_path)")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    p.add_argument(
        "--conf",
        type=float,
        help="one threshold for every class (default: the model's per-class thresholds, else inference.conf)",
    )
    p.add_argument(
        "--conf-per-class", help="thresholds of chosen classes, CLASS:CONF comma-separated (e.g. circle:0.4,1:0.6)"
    )
    p.add_argument("--iou", type=float)
    p.add_argument("--max-det", type=int)
    p.add_argument("--classes", help="only these classes: names or ids, comma-separated (e.g. circle,square or 0,1)")
    p.add_argument(
        "--tile",
        help="detect in overlapping tiles of WIDTHxHEIGHT px (e.g. 640x640), merged (inference.tiling)",
    )
    p.add_argument("--overlap", type=float, default=0.2, help="with --tile: share of a tile its neighbour overlaps")
    p.add_argument("--save", type=Path, help="write the annotated video here (.mp4, .avi; live: .mp4, .mkv, .mov)")
    p.add_argument(
        "--jsonl",
        type=Path,
        help='video: one JSON line per processed frame {"frame", "time_s", ...}; `-`: on stdout (the summary then goes '
        "to stderr)",
    )
    p.add_argument("--track", action="store_true", help="video: give each detection a stable track_id (ByteTrack)")
    p.add_argument("--vid-stride", type=int, default=1, help="video: detect every N-th frame (default 1)")
    p.add_argument(
        "--timeout",
        type=float,
        help=f"live stream: seconds to wait to connect, then for data, before it fails (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-frames", type=int, default=0, help="live stream: stop after this many detected frames (default: none)"
    )
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="live stream: open it again when it ends, stalls or breaks off (waits 1, 2, 4... up to 30 s between "
        "tries); the run then ends at --max-frames or Ctrl-C",
    )
    p.add_argument(
        "--segment",
        type=float,
        help="live stream: record (--save) and write lines (--jsonl) in files of about this many seconds, each named "
        "for its start (UTC): live.mp4 -> live-20261205T154000Z.mp4, ...",
    )
    p.add_argument(
        "--keep",
        type=int,
        help="with --segment: keep at most this many segments of that name in the folder (earlier runs' too), "
        "deleting the oldest",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
