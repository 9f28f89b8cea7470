"""`POST /predict/video` timing two ways for a clip's frames (api/inference/clip_ways.py): on OpenVINO's streams, and
one at a time on the model's one-thread twin (`Detector.one_thread`). With the way switching every few frames here,
a clip gets the lines, tracks and boxes it gets on one way; a clip shorter than `LOAD_AFTER_FRAMES` never loads the
twin; and the twin is what runs the frames of the other way."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from api.inference import clip_ways
from api.service import default_detector_factory
from detector.runtime import Detector
from tests.integration.api.conftest import MakeConfig, RunApp

pytest.importorskip("openvino")


def _lines(client: Any, body: bytes, stride: int) -> list[dict[str, Any]]:
    headers = {"content-type": "video/mp4"}
    r = client.post("/predict/video", params={"track": "true", "vid_stride": stride}, content=body, headers=headers)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line]


@pytest.mark.parametrize("stride", [1, 2])
def test_frames_switching_ways_answer_as_on_one_way(
    make_config: MakeConfig,
    run_app: RunApp,
    dataset_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stride: int,
) -> None:
    from benchmarks.video import generated_clip

    body = generated_clip(tmp_path / "clip.mp4", dataset_dir, seconds=1).read_bytes()
    # OpenVINO with streams to split (two threads), and two frames at once on them (a switch settles in two).
    config = make_config("inference.backend=openvino", "inference.threads=2", "inference.server.max_batch=2")
    served: list[Detector] = []
    load = default_detector_factory(config)

    def factory(path: str, backend: str) -> Any:
        served.append(load(path, backend))  # type: ignore[arg-type]
        return served[-1]

    with run_app(config, factory) as client:
        (det,) = served
        one_way = _lines(client, body, stride)  # 30 frames: under LOAD_AFTER_FRAMES, the twin is never loaded
        assert det.one_thread(load=False) is None
        monkeypatch.setattr(clip_ways, "LOAD_AFTER_FRAMES", 1)
        fast = functools.partial(clip_ways.FastestOf, trial=2, passes=2, give_up=0.0, keep=3, keep_most=3)
        monkeypatch.setattr(clip_ways, "FastestOf", fast)
        twin = det.one_thread()  # loaded now (a clip loads it in the background), so this clip gets it at once
        assert twin is not None
        by_twin: list[int] = []
        predict_batch = twin.predict_batch

        def counted(images: Any, **kw: Any) -> Any:
            by_twin.append(len(images))
            return predict_batch(images, **kw)

        twin.predict_batch = counted  # type: ignore[method-assign]
        switching = _lines(client, body, stride)
    detected = len(range(0, 30, stride))
    assert 0 < sum(by_twin) < detected  # both ways answered frames of the clip
    assert [line["frame"] for line in one_way] == [line["frame"] for line in switching] == list(range(0, 30, stride))
    assert sum(len(line["detections"]) for line in one_way) > 0
    for a, b in zip(one_way, switching, strict=True):
        assert [d["track_id"] for d in a["detections"]] == [d["track_id"] for d in b["detections"]]
        assert [d["class_name"] for d in a["detections"]] == [d["class_name"] for d in b["detections"]]
        for da, db in zip(a["detections"], b["detections"], strict=True):
            assert [da["box"][k] for k in ("x1", "y1", "x2", "y2")] == pytest.approx(
                [db["box"][k] for k in ("x1", "y1", "x2", "y2")], abs=1e-2
            )
