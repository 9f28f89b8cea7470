"""`POST /predict/video` with untrusted clips (issue 21): playlists naming server files, the client's file name,
frames over `max_pixels`, and frames in flight counted in the decode pixel budget. Real app, real model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.clips import write_mjpeg_of_sizes, write_moving_clip
from tests.integration.api.conftest import MakeConfig, RunApp

SIDE = 64  # frames of the clips below: 4096 pixels
MAX_PIXELS = SIDE * SIDE


@pytest.fixture(scope="module")
def video_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video-spool")


@pytest.fixture(scope="module")
def app(make_config: MakeConfig, run_app: RunApp, video_tmp: Path) -> Iterator[TestClient]:
    # The budget holds exactly one frame: a clip still streams (its own oldest frame makes room for the next).
    config = make_config(
        f"inference.server.video_tmp_dir={video_tmp}",
        f"inference.server.max_pixels={MAX_PIXELS}",
        f"inference.server.decode_pixel_budget={MAX_PIXELS}",
        "inference.server.max_batch=4",
    )
    with run_app(config) as client:
        yield client


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    big = rng.integers(0, 255, (SIDE * 2, SIDE * 2, 3), dtype=np.uint8)
    return {
        "small": write_moving_clip(small, folder / "small.mp4", frames=12, shift=8),
        "big": write_moving_clip(big, folder / "big.mp4", frames=3, shift=8),
    }


def playlist(target: Path) -> bytes:
    """An HLS playlist (~100 bytes) naming a file on the server's disk."""
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode()


def test_a_playlist_naming_a_server_file_is_415_whether_it_exists_or_not(
    app: TestClient, clips: dict[str, Path], video_tmp: Path
) -> None:
    # Before: 200 for an existing file (the server decoded its own file), 415 for a missing one.
    answers = []
    for target in (clips["small"], clips["small"].with_name("missing.mp4")):
        for name in ("clip.m3u8", "clip.mp4", "clip"):
            r = app.post("/predict/video", files={"file": (name, playlist(target), "application/vnd.apple.mpegurl")})
            answers.append((r.status_code, r.json()["detail"]))
    assert len(set(answers)) == 1, answers
    status, detail = answers[0]
    assert status == 415 and "not a video" in detail, detail
    assert str(clips["small"].parent) not in detail
    assert list(video_tmp.iterdir()) == []


def test_the_spooled_clip_has_the_servers_name_and_the_containers_suffix(
    app: TestClient, clips: dict[str, Path], video_tmp: Path
) -> None:
    data = clips["small"].read_bytes()
    with app.stream("POST", "/predict/video", files={"file": ("../evil name.m3u8", data, "video/mp4")}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line)
        spooled = [p.name for p in video_tmp.iterdir()]
        held = [app.app.state.service.pixels.held]  # type: ignore[attr-defined]
        rest = []
        for line in lines:
            rest += [line] if line else []
            held.append(app.app.state.service.pixels.held)  # type: ignore[attr-defined]
    assert json.loads(first)["frame"] == 0 and len(rest) == 11
    assert len(spooled) == 1 and spooled[0].startswith("detector-video-") and spooled[0].endswith(".mp4"), spooled
    # Frames in flight hold their pixels in the shared decode budget (before: video frames were not counted). Looked
    # at after every line, not once: between two frames the reader may hold none for a moment.
    assert 0 < max(held) <= MAX_PIXELS, held
    assert app.app.state.service.pixels.held == 0  # type: ignore[attr-defined]
    assert list(video_tmp.iterdir()) == []


def test_frames_over_max_pixels_are_413_before_decoding(app: TestClient, clips: dict[str, Path]) -> None:
    # Before: 200; the same frame sent as an image is a 413.
    r = app.post("/predict/video", files={"file": ("big.mp4", clips["big"].read_bytes(), "video/mp4")})
    assert r.status_code == 413, r.text
    assert "128x128" in r.json()["detail"] and str(MAX_PIXELS) in r.json()["detail"]


def test_a_frame_that_outgrows_the_header_mid_clip_ends_the_stream_with_a_413_line(
    app: TestClient, tmp_path: Path
) -> None:
    # The header (and the probe's first frame) say 64x64; the third frame is 128x128, over max_pixels.
    clip = write_mjpeg_of_sizes(tmp_path / "grows.avi", [(SIDE, SIDE)] * 2 + [(SIDE * 2, SIDE * 2)] + [(SIDE, SIDE)])
    r = app.post("/predict/video", files={"file": ("grows.avi", clip.read_bytes(), "video/x-msvideo")})
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    assert [line["frame"] for line in lines[:-1]] == [0, 1], lines
    error = lines[-1]["error"]
    assert error["status"] == 413 and f"more than {MAX_PIXELS} pixels" in error["detail"], error
    assert "grows" not in error["detail"] and str(tmp_path) not in error["detail"]
    assert app.app.state.service.video_jobs.active == 0  # type: ignore[attr-defined]
    assert app.app.state.service.pixels.held == 0  # type: ignore[attr-defined]


def test_refused_clips_give_their_video_job_place_back(app: TestClient, clips: dict[str, Path]) -> None:
    gate = app.app.state.service.video_jobs  # type: ignore[attr-defined]
    for name, content in (
        ("a.mp4", b"not a video at all, " * 10),
        ("b.mp4", b""),
        ("c.mp4", clips["big"].read_bytes()),
    ):
        r = app.post("/predict/video", files={"file": (name, content, "video/mp4")})
        assert 400 <= r.status_code < 500, r.text
        assert gate.active == 0, (name, gate.active)
