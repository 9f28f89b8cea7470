"""Tiled inference (`tile=WxH`) with the real model: the library's tiled answer equals its per-tile answers moved
into the scene, `/predict`, `/predict/video` and `detector predict --tile` (images and clips) give the library's
answer, a tiled image takes one queue place however many tiles it has, and what cannot be tiled is a 422 naming the
parameter."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from detector.runtime import Detector
from detector.runtime.images import decode_image
from detector.runtime.tiling import Tiling
from detector.runtime.video import read_frames
from tests.clips import write_moving_clip
from tests.integration.api.test_api_predict import LOW_CONF, assert_same_detections

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scene(dataset_dir: Path) -> np.ndarray:
    """A 512x256 scene of eight 128 px validation images side by side, each where a 128 px tile falls."""
    tiles = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((dataset_dir / "images/val").glob("*.jpg"))[:8]]
    rows = [np.concatenate(tiles[i : i + 4], axis=1) for i in (0, 4)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(make_config: Any, run_app: Any) -> Iterator[TestClient]:
    # A queue of 4 places (2 for video frames): fewer than the 15 tiles the tests cut, which must not matter.
    config = make_config(
        "inference.server.decode_mode=exact", "inference.tiling.max_tiles=16", "inference.server.queue_size=4"
    )
    with run_app(config) as c:
        yield c


@pytest.fixture(scope="module")
def reference(client: TestClient, model_path: Path) -> Iterator[Detector]:
    with Detector.load(model_path, backend=client.get("/model").json()["backend"]) as det:
        yield det


def test_tiles_equal_each_tile_alone_moved_into_the_scene(reference: Detector, scene: np.ndarray) -> None:
    # Merged at the model's own NMS IoU (0.7), so merging takes nothing away within a tile (SAHI's 0.5 would).
    tiled = reference.predict(scene, conf=LOW_CONF, tiles=Tiling(128, 128, overlap=0, match_threshold=0.7))
    alone = []
    for y in (0, 128):
        for x in (0, 128, 256, 384):
            found = reference.predict(scene[y : y + 128, x : x + 128], conf=LOW_CONF)
            alone += [
                (*(b.astype(np.float64) + np.array([x, y, x, y])).round(2).tolist(), round(float(s), 4), int(c))
                for b, s, c in zip(found.xyxy, found.confidence, found.class_id, strict=True)
            ]
    got = [
        (*b.astype(np.float64).round(2).tolist(), round(float(s), 4), int(c))
        for b, s, c in zip(tiled.xyxy, tiled.confidence, tiled.class_id, strict=True)
    ]
    assert alone, "the quick model finds objects in the validation images"
    assert sorted(got) == sorted(alone)  # nothing lost or moved by tiling and merging (the tiles do not overlap)


def test_predict_with_tile_equals_the_library(client: TestClient, reference: Detector, scene: np.ndarray) -> None:
    data = png(scene)
    r = client.post("/predict?tile=128x128&overlap=0.25&conf=0.05", files={"file": ("scene.png", data, "image/png")})
    assert r.status_code == 200, r.text
    want = reference.predict(decode_image(data), conf=LOW_CONF, tiles=Tiling(128, 128, overlap=0.25)).to_list()
    assert want and r.json()["image"] == {"width": 512, "height": 256}
    assert_same_detections(r.json()["detections"], want)
    assert r.headers["X-Batch-Size"] == "15"  # 5 x 3 tiles at a 96 px step, one backend call for all of them


def test_a_batch_in_tiles_answers_each_image_and_refuses_only_the_one_smaller_than_a_tile(
    client: TestClient, reference: Detector, scene: np.ndarray
) -> None:
    files = [
        ("files", ("scene.png", png(scene), "image/png")),
        ("files", ("small.png", png(scene[:100, :100]), "image/png")),
    ]
    r = client.post("/predict/batch?tile=128x128&overlap=0.25&conf=0.05", files=files)
    # Before: the whole batch was a 422 for the small image's sake, without saying which image.
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    want = reference.predict(scene, conf=LOW_CONF, tiles=Tiling(128, 128, overlap=0.25)).to_list()
    assert_same_detections(first["detections"], want)
    assert second["error"] == {
        "status": 422,
        "detail": "tile: 128x128 is larger than the image (100x100); send a smaller tile or no tile",
    }


def test_a_clip_in_tiles_gives_the_library_answer_per_frame(
    client: TestClient, reference: Detector, scene: np.ndarray, tmp_path: Path
) -> None:
    # 15 tiles a frame where video frames may hold 2 queue places: each frame's tiles are one job on one place.
    path = write_moving_clip(scene, tmp_path / "scene.mp4", frames=4, shift=32)
    params = {"tile": "128x128", "overlap": "0.25", "conf": "0.05"}
    with client.stream("POST", "/predict/video", params=params, files={"file": ("s.mp4", path.read_bytes())}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert r.status_code == 200 and [line.get("frame") for line in lines] == [0, 1, 2, 3], lines
    tiling = Tiling(128, 128, overlap=0.25)
    for line, (_, frame, _, _) in zip(lines, read_frames(path), strict=True):  # the service's own reader
        want = reference.predict(frame, conf=LOW_CONF, tiles=tiling).to_list()
        assert want and line["detections"]
        assert_same_detections(line["detections"], want)


def test_a_step_of_one_pixel_is_refused_before_a_tile_is_cut(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1.8 million tiles of this 1400x1400 image: refused from their count; listing them would block the event loop.
    def no_grid(self: Tiling, width: int, height: int) -> list[Any]:
        raise AssertionError("the grid was made")

    monkeypatch.setattr(Tiling, "grid", no_grid)
    data = png(np.full((1400, 1400, 3), 90, np.uint8))
    r = client.post("/predict?tile=64x64&overlap=0.99", files={"file": ("big.png", data, "image/png")})
    assert r.status_code == 422 and "into 1787569 tiles; at most 16" in r.json()["detail"], r.text


@pytest.mark.parametrize(
    ("tile", "needle"),
    [("32x32", "at most 16 (inference.tiling.max_tiles)"), ("640x640", "tile: 640x640 is larger than the image")],
)
def test_a_clip_that_cannot_be_tiled_is_a_422_before_any_line(
    client: TestClient, scene: np.ndarray, tmp_path: Path, tile: str, needle: str
) -> None:
    path = write_moving_clip(scene, tmp_path / "scene.mp4", frames=2, shift=32)
    r = client.post("/predict/video", params={"tile": tile}, files={"file": ("s.mp4", path.read_bytes())})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("tile=640x640", "tile: 640x640 is larger than the image (512x256)"),
        ("tile=32x32", "at most 16 (inference.tiling.max_tiles)"),
        ("tile=big", "tile: expected WIDTHxHEIGHT"),
        ("tile=64x64&overlap=1", "overlap"),
    ],
)
def test_what_cannot_be_tiled_is_a_422_naming_the_parameter(
    client: TestClient, scene: np.ndarray, query: str, needle: str
) -> None:
    r = client.post(f"/predict?{query}", files={"file": ("scene.png", png(scene), "image/png")})
    assert r.status_code == 422 and needle in json.dumps(r.json()), r.text


def test_cli_predict_tile_gives_the_library_answer(
    reference: Detector, scene: np.ndarray, model_path: Path, tmp_path: Path
) -> None:
    path = tmp_path / "scene.png"
    path.write_bytes(png(scene))
    cmd = [sys.executable, "-m", "cli", "predict", str(path), "--model", str(model_path), "--conf", "0.05"]
    cmd += ["--backend", reference.describe()["backend"], "--tile", "128x128", "--overlap", "0.25"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
    (result,) = json.loads(out.stdout)
    want = reference.predict(decode_image(path.read_bytes()), conf=LOW_CONF, tiles=Tiling(128, 128, overlap=0.25))
    assert_same_detections(result["detections"], want.to_list())
    # Among several images, one smaller than the tile: the error says which.
    small = tmp_path / "small.png"
    small.write_bytes(png(scene[:100, :100]))
    cmd[4:4] = [str(small)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "small.png: tile: 128x128 is larger than the image (100x100)" in out.stderr, out
    small_one, scene_one = json.loads(out.stdout)  # that image's own entry, and the other image answered
    assert small_one["file"] == str(small)
    assert small_one["error"].startswith(f"{small}: tile: 128x128 is larger than the image (100x100)")
    assert_same_detections(scene_one["detections"], want.to_list())


def test_cli_predict_clip_with_tile_gives_the_library_answer_per_frame(
    reference: Detector, scene: np.ndarray, model_path: Path, tmp_path: Path
) -> None:
    path = write_moving_clip(scene, tmp_path / "scene.mp4", frames=4, shift=32)
    jsonl = tmp_path / "lines.jsonl"
    cmd = [sys.executable, "-m", "cli", "predict", str(path), "--model", str(model_path), "--conf", "0.05"]
    cmd += ["--backend", reference.describe()["backend"], "--tile", "128x128", "--overlap", "0.25"]
    subprocess.run(
        [*cmd, "--jsonl", str(jsonl), "--no-progress"], cwd=REPO, capture_output=True, check=True, timeout=120
    )
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]
    tiling = Tiling(128, 128, overlap=0.25)
    for line, (_, frame, _, _) in zip(lines, read_frames(path), strict=True):
        want = reference.predict(frame, conf=LOW_CONF, tiles=tiling).to_list()
        assert want and line["detections"]
        assert_same_detections(line["detections"], want)
    # A tile larger than the clip's frames: refused before a frame is read.
    out = subprocess.run([*cmd[:-4], "--tile", "640x640"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "scene.mp4: tile: 640x640 is larger than the image (512x256)" in out.stderr, out
