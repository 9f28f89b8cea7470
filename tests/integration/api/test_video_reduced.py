"""Frames decoded at the model's size (mp4v at 1/8 here) give the same objects, in the clip's coordinates, as
frames decoded whole: through `POST /predict/video` (`decode_mode: reduced` against `exact`) and through the CLI's
loop (`detect_video` without a writer against one with, which needs whole frames)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from detector.runtime import Detector
from detector.runtime.classes import filter_classes
from detector.runtime.detections import Detections
from detector.runtime.video import read_frames
from detector.runtime.video_detect import detect_video
from tests.clips import confident_scene, turn_mp4, write_mjpeg_of_sizes, write_moving_clip
from tests.integration.api.conftest import MakeConfig, RunApp

UPSCALE = 8  # the quick model's 128 px input against a scene 8 times its size: lowres 3 where the scene is 128 px


@pytest.fixture(scope="module")
def big_clip(model_path: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    scene, name = confident_scene(model_path, dataset_dir)
    side = 128 * UPSCALE
    longest = max(scene.shape[:2])
    big = cv2.resize(scene, (side * scene.shape[1] // longest, side * scene.shape[0] // longest))
    path = write_moving_clip(big, tmp_path_factory.mktemp("big") / "big.mp4", frames=8, shift=48 * UPSCALE // 2)
    return path, name


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _same_objects(exact: list[list[list[float]]], reduced: list[list[list[float]]]) -> None:
    assert len(exact) == len(reduced) and any(exact)
    for frame, (want, got) in enumerate(zip(exact, reduced, strict=True)):
        assert len(want) == len(got), f"frame {frame}: {want} against {got}"
        for box in want:
            best = max(_iou(np.array(box), np.array(other)) for other in got)
            assert best > 0.8, f"frame {frame}: {box} has no match in {got} (IoU {best:.2f})"


def test_the_clip_really_decodes_reduced(big_clip: tuple[Path, str]) -> None:
    (_, pixels, _, _), *_ = read_frames(big_clip[0], reduce_to=(128, 128))
    full = next(read_frames(big_clip[0]))[1]
    assert pixels.shape[0] * UPSCALE == full.shape[0] and pixels.shape[1] * UPSCALE == full.shape[1]


def test_video_route_boxes_match_a_whole_decode(
    make_config: MakeConfig, run_app: RunApp, big_clip: tuple[Path, str], tmp_path: Path
) -> None:
    path, name = big_clip
    full = int(np.prod(next(read_frames(path))[1].shape[:2]))

    def boxes(client: TestClient) -> tuple[list[list[list[float]]], set[tuple[int, int]]]:
        """The boxes of every frame, and what each frame took from the pixel budget and kept after decoding."""
        budget = client.app.state.service.pixels  # type: ignore[attr-defined]
        kept: set[tuple[int, int]] = set()
        shrink = budget.shrink

        def spy(taken: int, needed: int) -> int:
            kept.add((taken, needed))
            return int(shrink(taken, needed))

        budget.shrink = spy
        files = {"file": ("clip.mp4", path.read_bytes(), "video/mp4")}
        with client.stream("POST", "/predict/video", params={"classes": name}, files=files) as r:
            assert r.status_code == 200
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert budget.held == 0
        return [[[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in line["detections"]] for line in lines], kept

    spool = f"inference.server.video_tmp_dir={tmp_path}"
    with run_app(make_config(spool, "inference.server.decode_mode=exact")) as client:
        exact, exact_kept = boxes(client)
    with run_app(make_config(spool, "inference.server.decode_mode=reduced")) as client:
        reduced, reduced_kept = boxes(client)
    _same_objects(exact, reduced)
    # Each frame takes its full size from the budget before decoding; a reduced one keeps only its array after.
    assert exact_kept == {(full, full)}
    assert reduced_kept == {(full, full // UPSCALE**2)}


def test_cli_loop_boxes_match_a_whole_decode(model_path: Path, big_clip: tuple[Path, str], tmp_path: Path) -> None:
    path, name = big_clip
    runs: dict[str, list[list[list[float]]]] = {"reduced": [], "whole": []}
    with Detector.load(model_path, "onnxruntime") as det:
        wanted = frozenset(k for k, v in det.metadata.names.items() if v == name)
        for kind, save in (("reduced", None), ("whole", tmp_path / "drawn.mp4")):

            def keep(index: int, time_s: float, dets: Detections, ids: object, kind: str = kind) -> None:
                runs[kind].append(dets.xyxy.tolist())

            detect_video(det, path, save=save, classes=wanted, on_frame=keep)
    _same_objects(runs["whole"], runs["reduced"])


def test_a_clip_whose_frames_change_size_is_answered_in_its_first_frames_size(
    model_path: Path, dataset_dir: Path, make_config: MakeConfig, run_app: RunApp, tmp_path: Path
) -> None:
    # The test scene stretched to each frame's size; the header declares the first size (16:9), then 2x, then 4:3.
    scene, name = confident_scene(model_path, dataset_dir)
    sizes = [(640, 360)] * 3 + [(1280, 720)] * 3 + [(320, 240)] * 3
    clip = write_mjpeg_of_sizes(tmp_path / "sizes.avi", sizes, scene=scene)
    runs: dict[str, list[list[list[float]]]] = {"reduced": [], "whole": []}
    with Detector.load(model_path, "onnxruntime") as det:
        wanted = frozenset(k for k, v in det.metadata.names.items() if v == name)
        # Where the object is in the clip's 640x360: found on the first frame, which is the clip's size.
        (x1, y1, x2, y2), *_ = filter_classes(det.predict(cv2.resize(scene, sizes[0])), wanted).xyxy.tolist()
        for kind, save in (("reduced", None), ("whole", tmp_path / "drawn.mp4")):

            def keep(index: int, time_s: float, dets: Detections, ids: object, kind: str = kind) -> None:
                runs[kind].append(dets.xyxy.tolist())

            detect_video(det, clip, save=save, classes=wanted, on_frame=keep)
    _same_objects(runs["whole"], runs["reduced"])
    # Every frame is scaled to the clip's size, boxes included: the object stays where it is in 640x360.
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    for boxes in runs["whole"]:
        assert any(abs((a + c) / 2 - centre[0]) < 24 and abs((b + d) / 2 - centre[1]) < 24 for a, b, c, d in boxes)
    # Every frame written, at that size (before: OpenCV's writer dropped the 6 frames of other sizes, silently).
    written = [pixels.shape for _, pixels, _, _ in read_frames(tmp_path / "drawn.mp4")]
    assert written == [(360, 640, 3)] * len(sizes)
    # The service answers every frame in the same coordinates.
    with run_app(make_config(f"inference.server.video_tmp_dir={tmp_path}")) as client:
        files = {"file": ("sizes.avi", clip.read_bytes(), "video/x-msvideo")}
        r = client.post("/predict/video", params={"classes": name}, files=files)
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    served = [[[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in line["detections"]] for line in lines]
    _same_objects(runs["whole"], served)


Scored = list[tuple[list[float], float]]  # a frame's boxes with their scores
LOW = 0.1  # the threshold every side answers at where boxes scored `sure` are compared


def _confident_agree(one: list[Scored], other: list[Scored], sure: float = 0.5) -> None:
    """Every box scored at least `sure` on either side has a twin (IoU > 0.8) on the other, frame by frame; boxes
    near the threshold may come and go with a pixel's difference (a reduced decode, another CPU's model)."""
    assert len(one) == len(other) and any(one)
    for frame, (a, b) in enumerate(zip(one, other, strict=True)):
        for mine, theirs in ((a, b), (b, a)):
            for box, score in mine:
                if score >= sure:
                    best = max((_iou(np.array(box), np.array(o)) for o, _ in theirs), default=0.0)
                    assert best > 0.8, f"frame {frame}: {box} ({score:.2f}) has no twin in {theirs} (IoU {best:.2f})"


def _scored(dets: Detections) -> Scored:
    return list(zip(dets.xyxy.tolist(), dets.confidence.tolist(), strict=True))


def test_a_clip_shown_turned_is_detected_upright_as_opencv_shows_it(
    model_path: Path, dataset_dir: Path, make_config: MakeConfig, run_app: RunApp, tmp_path: Path
) -> None:
    # A phone's portrait clip: the pixels stored landscape (256x128), the track saying to show them turned a quarter.
    # Before: detected lying on their side, boxes stretched into the turned size OpenCV's probe reports (128x256).
    # Every class: the quick model knows its shapes upright only, so the scene's confident one may not be found
    # turned; what matters is that the clip's boxes are those of its upright frames.
    scene, _ = confident_scene(model_path, dataset_dir)
    landscape = cv2.copyMakeBorder(scene, 0, 0, 64, 64, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    plain = write_moving_clip(landscape, tmp_path / "plain.mp4", frames=6, shift=32)
    path = turn_mp4(plain, tmp_path / "turned.mp4", 90)
    capture = cv2.VideoCapture(str(path))
    shown = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(6)]
    capture.release()
    assert shown[0].shape == (256, 128, 3)  # upright: portrait
    # Every side answers down to LOW, so a box scored `sure` on one side finds its twin on the other even where a
    # pixel's difference moves its score below the model's own threshold for its class (seen on an Intel Xeon's
    # quick model: 0.54 from OpenCV's frame, under that class's threshold from PyAV's).
    cli: list[Scored] = []
    with Detector.load(model_path, "onnxruntime") as det:
        want = [_scored(det.predict(frame, conf=LOW)) for frame in shown]
        detect_video(
            det, path, predict={"conf": LOW}, on_frame=lambda index, time_s, dets, ids: cli.append(_scored(dets))
        )
    _confident_agree(want, cli)
    with run_app(make_config(f"inference.server.video_tmp_dir={tmp_path}")) as client:
        video = {"file": ("turned.mp4", path.read_bytes(), "video/mp4")}
        r = client.post("/predict/video", params={"conf": LOW}, files=video)
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    served = [
        [([d["box"][k] for k in ("x1", "y1", "x2", "y2")], d["confidence"]) for d in line["detections"]]
        for line in lines
    ]
    _confident_agree(want, served)
