"""A line's `time_s` is when its frame is shown: the frame's timestamp, right in a variable-frame-rate clip (phones
record one in low light). Before, it was index / fps: 0.9 s off mid-clip in a clip shot at 30 then 10 fps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.runtime import Detector
from detector.runtime.video_detect import detect_video
from tests.clips import write_vfr_clip
from tests.integration.api.conftest import MakeConfig, RunApp

TIMES_MS = [33 * i for i in range(12)] + [396 + 100 * i for i in range(12)]  # 30 fps, then 10 fps


def test_frames_are_timed_by_their_timestamps(
    model_path: Path, make_config: MakeConfig, run_app: RunApp, tmp_path: Path
) -> None:
    clip = write_vfr_clip(tmp_path / "vfr.mp4", TIMES_MS)
    want = [t / 1000 for t in TIMES_MS]
    timed: list[float] = []
    with Detector.load(model_path, "onnxruntime") as det:
        run = detect_video(det, clip, on_frame=lambda index, time_s, dets, ids: timed.append(time_s))
    assert run.info.fps != pytest.approx(30) and timed == pytest.approx(want, abs=1e-6)
    with run_app(make_config(f"inference.server.video_tmp_dir={tmp_path}")) as client:
        for stride in (1, 5):
            r = client.post(
                "/predict/video", params={"vid_stride": stride}, files={"file": ("vfr.mp4", clip.read_bytes())}
            )
            assert r.status_code == 200, r.text
            lines = [json.loads(line) for line in r.text.splitlines() if line]
            assert [line["frame"] for line in lines] == list(range(0, len(TIMES_MS), stride))
            assert [line["time_s"] for line in lines] == pytest.approx(want[::stride], abs=1e-4)
