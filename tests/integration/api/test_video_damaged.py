"""A clip with damaged frames (bits lost on a disk or on the way, a recording cut off mid-write) is read as players
read it: those frames are skipped and said so, the frames after them are detected. Before, the first damaged frame
ended the clip with an error, and every frame after it was lost, in the CLI, the library and `/predict/video`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.runtime import Detector
from detector.runtime.detections import Detections
from detector.runtime.video import read_frames
from detector.runtime.video_detect import detect_video
from tests.clips import confident_scene, write_mjpeg_of_sizes
from tests.integration.api.conftest import MakeConfig, RunApp

SIZES = [(320, 240)] * 9
DAMAGED = frozenset({2, 3, 7})


@pytest.fixture(scope="module")
def clips(model_path: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    scene, _ = confident_scene(model_path, dataset_dir)
    folder = tmp_path_factory.mktemp("damaged")
    return {
        "clean": write_mjpeg_of_sizes(folder / "clean.avi", SIZES, scene=scene),
        "damaged": write_mjpeg_of_sizes(folder / "damaged.avi", SIZES, scene=scene, damaged=DAMAGED),
    }


def _boxes(dets: Detections) -> list[list[float]]:
    return [[round(v, 1) for v in box] for box in dets.xyxy.tolist()]


def test_the_library_skips_damaged_frames_and_detects_the_rest(
    model_path: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    seen: dict[str, dict[int, list[list[float]]]] = {"clean": {}, "damaged": {}}
    with Detector.load(model_path, "onnxruntime") as det:
        for name, clip in clips.items():
            run = detect_video(
                det,
                clip,
                save=tmp_path / f"{name}.mp4",
                on_frame=lambda i, _, d, ids, n=name: seen[n].__setitem__(i, _boxes(d)),
            )
            assert run.damaged == (() if name == "clean" else tuple(sorted(DAMAGED)))
            assert run.frames == run.processed == len(SIZES) - len(run.damaged)
    assert any(seen["clean"].values())
    assert seen["damaged"] == {i: boxes for i, boxes in seen["clean"].items() if i not in DAMAGED}
    # The drawn clip has the frames that could be read.
    assert len(list(read_frames(tmp_path / "damaged.mp4"))) == len(SIZES) - len(DAMAGED)


def test_the_service_streams_a_warning_line_in_place_of_each_damaged_frame(
    clips: dict[str, Path], make_config: MakeConfig, run_app: RunApp, tmp_path: Path
) -> None:
    answers = {}
    with run_app(make_config(f"inference.server.video_tmp_dir={tmp_path}")) as client:
        for name, clip in clips.items():
            r = client.post("/predict/video", params={"track": "true"}, files={"file": (clip.name, clip.read_bytes())})
            assert r.status_code == 200, r.text
            answers[name] = [json.loads(line) for line in r.text.splitlines() if line]
    clean, damaged = answers["clean"], answers["damaged"]
    assert [line["frame"] for line in clean] == list(range(len(SIZES)))
    for index, line in enumerate(damaged):
        if index in DAMAGED:
            assert line == {
                "warning": {
                    "frame": index,
                    "detail": f"frame {index} cannot be decoded (damaged data): skipped, the frames after it follow",
                }
            }
        else:
            assert line["frame"] == index and line["detections"], line
            boxes = [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in line["detections"]]
            assert boxes == [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in clean[index]["detections"]]
