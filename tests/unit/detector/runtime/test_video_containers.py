"""Untrusted clips (issue 21): container sniffing and the FFmpeg restrictions OpenCV applies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.runtime.video import FFMPEG_CAPTURE_ENV, SAFE_FFMPEG_OPTIONS, sniff_container


def write_clip(path: Path, fourcc: str) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize(
    ("name", "fourcc", "suffix"), [("a.mp4", "mp4v", ".mp4"), ("a.mkv", "XVID", ".mkv"), ("a.avi", "MJPG", ".avi")]
)
def test_containers_are_recognised_by_their_first_bytes(tmp_path: Path, name: str, fourcc: str, suffix: str) -> None:
    assert sniff_container(write_clip(tmp_path / name, fourcc).read_bytes()[:64]) == suffix


@pytest.mark.parametrize(
    "head",
    [b"#EXTM3U\n#EXTINF:1,\n/etc/passwd\n", b"ffconcat version 1.0\nfile /x\n", b"\xff\xd8\xff\xe0" + b"\0" * 20, b""],
)
def test_anything_else_is_not_a_container(head: bytes) -> None:
    assert sniff_container(head) is None


OPEN = "import cv2, sys; print(cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG).isOpened())"


def opens(path: Path, restricted: bool) -> bool:
    env = {k: v for k, v in os.environ.items() if k != FFMPEG_CAPTURE_ENV}
    if restricted:
        env[FFMPEG_CAPTURE_ENV] = SAFE_FFMPEG_OPTIONS
    out = subprocess.run([sys.executable, "-c", OPEN, str(path)], env=env, capture_output=True, text=True, timeout=60)
    return out.stdout.strip() == "True"


def test_restricted_ffmpeg_opens_the_accepted_containers_but_no_playlist(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "src.avi", "MJPG")
    hls = tmp_path / "list.m3u8"
    hls.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{clip}\n#EXT-X-ENDLIST\n")
    assert opens(hls, restricted=False)  # what FFmpeg does by default: follows the playlist to the local file
    assert not opens(hls, restricted=True)
    for name, fourcc in (("a.mp4", "mp4v"), ("a.mkv", "XVID"), ("a.avi", "MJPG")):
        assert opens(write_clip(tmp_path / name, fourcc), restricted=True), name
