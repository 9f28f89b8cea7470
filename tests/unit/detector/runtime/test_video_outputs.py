"""`check_outputs`: an output that is the clip itself (by another name, a symlink or a hard link) or another output
is refused before anything is opened for writing; before, `--save clip.mp4` truncated the clip being read. A live
recording (`StampedVideoWriter`) keeps each frame's time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime.video import StampedVideoWriter, check_outputs


def test_an_output_that_is_the_clip_or_another_output_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"the user's only copy")
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    for same in (clip, tmp_path / "sub" / ".." / "clip.mp4", tmp_path / "link.mp4", tmp_path / "hard.mp4"):
        with pytest.raises(InvalidInputError, match="is the clip itself"):
            check_outputs(clip, None, same)
    with pytest.raises(InvalidInputError, match="is another output"):
        check_outputs(clip, tmp_path / "out.mp4", tmp_path / "sub" / ".." / "out.mp4")
    check_outputs(clip, tmp_path / "out.mp4", tmp_path / "out.jsonl", None)  # distinct files: fine
    with pytest.raises(InvalidInputError, match="is another output"):  # a live stream's: no clip to compare
        check_outputs(None, tmp_path / "out.mp4", tmp_path / "hard.mp4", tmp_path / "link.mp4")
    check_outputs(None, tmp_path / "out.mp4", tmp_path / "out.jsonl")
    assert clip.read_bytes() == b"the user's only copy"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_live_recording_keeps_each_frames_time(tmp_path: Path, suffix: str) -> None:
    import av

    # A camera at 30 fps, a 2 s gap (a reconnection), then 10 fps; three frames read at once at the start (FFmpeg's
    # probe). A rate for all frames (OpenCV's writer) would play this too fast or too slow throughout.
    times = [100.0, 100.0, 100.0] + [100 + i / 30 for i in range(3, 30)] + [103 + i / 10 for i in range(10)]
    path = tmp_path / f"live{suffix}"
    with StampedVideoWriter(path, 64, 48) as writer:
        for i, t in enumerate(times):
            frame = np.full((96, 128, 3) if i == 5 else (48, 64, 3), 8 * (i % 30), np.uint8)  # one of another size
            writer.write(frame, t)
    assert writer.frames == len(times)
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == len(times) and {(f.width, f.height) for f in decoded} == {(64, 48)}
    got = [float(f.pts * f.time_base) for f in decoded]
    assert got[:3] == [0.0, 0.001, 0.002]  # one tick each: no two frames at one time
    assert all(abs(g - (t - 100)) < 0.0015 for g, t in zip(got[3:], times[3:], strict=True)), got
    assert abs(got[-1] - 3.9) < 0.002  # plays for as long as the camera sent


def test_a_live_recording_is_a_container_with_frame_times(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"cannot record a live stream to live.avi: use .mp4, .mkv, .mov"):
        StampedVideoWriter(tmp_path / "live.avi", 64, 48)
    assert not (tmp_path / "live.avi").exists()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_live_recording_killed_mid_write_plays_to_its_last_key_frame(tmp_path: Path, suffix: str) -> None:
    # SIGKILL (the OOM killer, a power cut) gives no chance to close: before, the MP4 was its 44-byte header and the
    # MKV empty, so hours of a camera were lost. Now each packet reaches the file and an MP4 is fragmented.
    import signal
    import subprocess
    import sys

    import av

    from tests.conftest import REPO

    path = tmp_path / f"killed{suffix}"
    writes = (
        "import sys, numpy as np\n"
        "from detector.runtime.video import StampedVideoWriter\n"
        "w = StampedVideoWriter(sys.argv[1], 160, 120)\n"
        "for i in range(10**6):\n"
        "    w.write(np.full((120, 160, 3), (7 * i) % 255, np.uint8), i / 30)\n"
        "    print(i, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writes, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if int(line) >= 99:  # 100 frames written
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    with av.open(str(path)) as container:
        played = sum(1 for _ in container.decode(video=0))
    assert 100 - 12 <= played <= 100 + 12  # up to the last key frame (one every 12 frames), or a few more written
