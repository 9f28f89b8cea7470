"""`benchmarks.video.video_ratios`: ours over Ultralytics' INT8 `track` (the issue's bar) and over the faster of its
two exports, per size and clip."""

from __future__ import annotations

from benchmarks.video import TRACK, TRACK_FP32, video_ratios


def test_ratios_against_the_int8_bar_and_the_faster_export() -> None:
    fps = {
        (256, "real", "ours, CLI"): 300.0,
        (256, "real", "ours, HTTP"): 240.0,
        (256, "real", TRACK): 100.0,
        (256, "real", TRACK_FP32): 120.0,  # their bf16 beats their INT8 (AMX)
        (640, "real", "ours, CLI"): 90.0,
        (640, "real", TRACK): 45.0,
        (640, "real", TRACK_FP32): 30.0,  # their INT8 is the faster (a CPU without bf16)
    }
    ratios = video_ratios(fps)
    assert ratios == {
        "256 px real: ours, CLI / ultralytics track (target >= 2.0)": 3.0,
        "256 px real: ours, HTTP / ultralytics track (target >= 2.0)": 2.4,
        "640 px real: ours, CLI / ultralytics track (target >= 2.0)": 2.0,
        "256 px real: ours, CLI / ultralytics' fastest track": 2.5,
        "256 px real: ours, HTTP / ultralytics' fastest track": 2.0,
        "640 px real: ours, CLI / ultralytics' fastest track": 2.0,
    }


def test_a_cell_without_ultralytics_has_no_ratio() -> None:
    assert video_ratios({(256, "real", "ours, CLI"): 300.0}) == {}
