"""A live recording in segments (`LiveRecording` with `Saving.segment_s`): a new file every so many seconds of the
stream, each named for its start and playable on its own from a key frame, the oldest deleted beyond `keep`."""

from __future__ import annotations

import calendar
import logging
from pathlib import Path

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime import live_recording
from detector.runtime.live_recording import LineFiles, LiveRecording, Saving, Segmenting

WALL = float(calendar.timegm((2026, 12, 5, 15, 40, 0)))  # 2026-12-05 15:40:00 UTC


def _record(saving: Saving, times: list[float], monkeypatch: pytest.MonkeyPatch) -> LiveRecording:
    """`times` (arrival, seconds from the start of reading) recorded, the wall clock then at WALL + that time."""
    now = [WALL]
    monkeypatch.setattr(live_recording.time, "time", lambda: now[0])
    recording = LiveRecording(saving)
    for i, t in enumerate(times):
        now[0] = WALL + t
        recording.record(np.full((48, 64, 3), 5 * (i % 50), np.uint8), t)
    recording.close()
    return recording


def _frames(path: Path) -> list[tuple[float, bool]]:
    import av

    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.key_frame) for f in container.decode(video=0)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_recording_in_segments(tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 fps for 5 s, in 2 s segments: three files, cut every 2 s from the first frame.
    times = [0.35 + i / 10 for i in range(50)]
    recording = _record(Saving(tmp_path / f"live{suffix}", segment_s=2), times, monkeypatch)
    names = [segment.path.name for segment in recording.segments]
    assert names == [f"live-20261205T15400{s}Z{suffix}" for s in (0, 2, 4)]
    assert [round(segment.from_s, 2) for segment in recording.segments] == [0.35, 2.35, 4.35]
    played = [_frames(segment.path) for segment in recording.segments]
    assert [len(frames) for frames in played] == [20, 20, 10] and recording.written == 50
    for frames in played:  # each plays on its own: a key frame first, its own times from 0 at the camera's pace
        assert frames[0] == (0.0, True)
        assert np.allclose(np.diff([t for t, _ in frames]), 0.1, atol=0.0015)
    assert recording.kept() == recording.segments


def test_lines_in_segments_on_the_same_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A watcher's JSON lines, 10 a second for 5 s in 2 s segments, the newest two kept (an earlier run's too).
    now = [WALL]
    monkeypatch.setattr(live_recording.time, "time", lambda: now[0])
    earlier = tmp_path / "lines-20200101T000000Z.jsonl"
    earlier.write_text("{}\n")
    files = LineFiles(Segmenting(tmp_path / "lines.jsonl", segment_s=2, keep=2))
    for i in range(50):
        t = 0.35 + i / 10
        now[0] = WALL + t
        files.write(f'{{"frame": {i}, "time_s": {t:.2f}}}\n', t)
    files.close()
    begun = files.rotation.segments
    assert [s.path.name for s in begun] == [f"lines-20261205T15400{s}Z.jsonl" for s in (0, 2, 4)]
    assert [round(s.from_s, 2) for s in begun] == [0.35, 2.35, 4.35] and files.rotation.kept() == begun[1:]
    assert sorted(tmp_path.iterdir()) == [s.path for s in begun[1:]]  # the earlier run's and the first deleted
    assert [len(s.path.read_text().splitlines()) for s in begun[1:]] == [20, 10]
    assert begun[2].path.read_text().splitlines()[0] == '{"frame": 40, "time_s": 4.35}'


def test_one_file_without_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recording = _record(Saving(tmp_path / "live.mp4"), [i / 10 for i in range(30)], monkeypatch)
    assert [segment.path.name for segment in recording.segments] == ["live.mp4"]
    assert len(_frames(tmp_path / "live.mp4")) == 30 and list(tmp_path.iterdir()) == [tmp_path / "live.mp4"]


def test_keep_deletes_the_oldest_segments_of_that_name_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An earlier run's segments (a watcher restarted) count; files of other names, or not segments, are never touched.
    earlier = [tmp_path / f"cam-2026120{d}T000000Z.mkv" for d in (1, 2)]
    others = [
        tmp_path / n for n in ("cam.mkv", "cam-notes.mkv", "cam-20261201T000000Z.mp4", "camx-20261201T000000Z.mkv")
    ]
    for path in earlier + others:
        path.write_bytes(b"x")
    with caplog.at_level(logging.INFO, "detector.runtime.live_recording"):
        recording = _record(Saving(tmp_path / "cam.mkv", segment_s=1, keep=3), [i / 10 for i in range(45)], monkeypatch)
    made = [segment.path.name for segment in recording.segments]
    # Each segment and each deletion is logged as it happens (a run of days lists them only at its end).
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"{what} {tmp_path / name}"
        for what, name in [
            ("recording", made[0]),
            ("recording", made[1]),
            ("deleted", earlier[0].name),
            ("recording", made[2]),
            ("deleted", earlier[1].name),
            ("recording", made[3]),
            ("deleted", made[0]),
            ("recording", made[4]),
            ("deleted", made[1]),
        ]
    ]
    assert made == [f"cam-20261205T15400{s}Z.mkv" for s in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*made[-3:], *(p.name for p in others)])
    assert [segment.path.name for segment in recording.kept()] == made[-3:]
    assert recording.written == 45


def test_a_clock_set_back_never_overwrites_a_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_recording.time, "time", lambda: WALL)  # the same second for every segment
    recording = LiveRecording(Saving(tmp_path / "live.mp4", segment_s=1))
    for t in (0.0, 1.0, 2.0, 2.5):
        recording.record(np.zeros((48, 64, 3), np.uint8), t)
    recording.close()
    names = [segment.path.name for segment in recording.segments]
    assert names == ["live-20261205T154000Z.mp4", "live-20261205T154000Z-2.mp4", "live-20261205T154000Z-3.mp4"]
    assert [len(_frames(segment.path)) for segment in recording.segments] == [1, 1, 2]
    assert Saving(tmp_path / "live.mp4", segment_s=1).segments_on_disk() == [s.path for s in recording.segments]


def test_what_saving_refuses(tmp_path: Path) -> None:
    for kwargs, message in (
        ({"segment_s": 0.5}, r"segment: at least 1 second, or 0 for one file \(got 0.5\)"),
        ({"segment_s": -1}, r"segment: at least 1 second"),
        ({"segment_s": float("nan")}, r"segment: at least 1 second"),  # never cut, then a crash on the reading thread
        ({"segment_s": float("inf")}, r"segment: at least 1 second"),
        ({"segment_s": 60, "keep": -1}, r"keep: 0 \(all\) or more segments \(got -1\)"),
        ({"keep": 3}, r"keep applies to a recording in segments"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            Saving(tmp_path / "live.mp4", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"cannot record a live stream to live.avi"):
        Saving(tmp_path / "live.avi", segment_s=60)
    assert not list(tmp_path.iterdir())


def test_a_stream_that_changes_size_keeps_its_boxes_on_their_objects(tmp_path: Path) -> None:
    """A camera switched to another resolution mid-recording (a phone turned, a profile changed): the frames of the
    new size go into the recording's size with their aspect kept (black bars), and the boxes, given in each frame's
    own size, are drawn where their objects are. Before, the frame was stretched to the recording's size first and
    the boxes of the new size drawn on it: off their objects by the ratio of the two sizes."""
    import av
    import cv2

    from detector.runtime.detections import Detections
    from detector.runtime.draw import draw_detections

    recording = LiveRecording(Saving(tmp_path / "live.mp4"))
    box = np.array([[40.0, 60.0, 100.0, 140.0]], np.float32)  # in the frame's own pixels
    dets = Detections(box, np.array([0.9], np.float32), np.zeros(1, np.int64), {0: "thing"})
    recording.last = dets, None
    wide, tall = np.full((120, 160, 3), 100, np.uint8), np.full((240, 160, 3), 100, np.uint8)
    for i, frame in enumerate([wide] * 5 + [tall] * 5):  # 4:3 landscape, then a 2:3 portrait
        recording.record(frame, i / 10)
    recording.close()
    with av.open(str(tmp_path / "live.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert len(frames) == 10 and all(f.shape == (120, 160, 3) for f in frames)
    assert np.abs(frames[2] - draw_detections(wide, dets)).mean() < 3  # the same size: as drawn
    # The portrait frame drawn at its own size, then at half scale between black bars 40 px wide.
    drawn = cv2.resize(draw_detections(tall, dets), (80, 120), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(frames[7][:, 40:120] - drawn).mean() < 3
    assert frames[7][:, :38].max() < 20 and frames[7][:, 122:].max() < 20
    stretched = draw_detections(cv2.resize(tall, (160, 120), interpolation=cv2.INTER_AREA), dets).astype(int)
    assert np.abs(frames[7] - stretched).mean() > 20  # what it was
