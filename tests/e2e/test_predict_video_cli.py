"""`detector predict CLIP.mp4 --save out.mp4 [--track] [--vid-stride N] [--jsonl out.jsonl]` as users run it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from detector.runtime import Detector
from detector.runtime.images import read_image
from tests.clips import confident_scene, write_mjpeg_of_sizes, write_moving_clip
from tests.conftest import run_cli


def frame_count(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Frames counted by decoding them all (not the container's claim), fps, (width, height)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    size = (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        size = (frame.shape[1], frame.shape[0])
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    cap.release()
    return n, fps, size


@pytest.fixture(scope="module")
def scene_clip(model_path: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    scene, name = confident_scene(model_path, dataset_dir)
    return write_moving_clip(scene, tmp_path_factory.mktemp("clip") / "clip.mp4", frames=30, fps=15), name


def test_video_annotated_same_frames_and_one_track(scene_clip: tuple[Path, str], model_path: Path, tmp_path: Path):
    clip, name = scene_clip
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    args = ["predict", str(clip), "--model", str(model_path), "--backend", "onnxruntime"]
    proc = run_cli([*args, "--save", str(out), "--track", "--jsonl", str(jsonl), "--classes", name], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["frames"] == summary["processed_frames"] == 30 and summary["tracked"] is True
    assert "30/30" in proc.stderr  # the progress bar, on stderr (stdout is the JSON)
    assert frame_count(out) == (30, 15.0, (128, 128))
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(30))
    ids = [d["track_id"] for r in records for d in r["detections"]]
    assert sum(tid is not None for tid in ids) >= 20, f"the object is tracked in most frames: {ids}"
    assert [d["track_id"] for d in records[0]["detections"]] == [ids[0]] != [None], f"from the first frame: {ids}"
    assert len(set(ids) - {None}) == 1, f"the object moving across the clip keeps one track id: {ids}"
    xs = [r["detections"][0]["box"]["x1"] for r in records if r["detections"]]
    assert xs[0] - xs[-1] > 30  # it really moved (the pan is 48 px)


def test_vid_stride_and_errors(scene_clip: tuple[Path, str], model_path: Path, tmp_path: Path) -> None:
    clip, _ = scene_clip
    args = ["predict", str(clip), "--model", str(model_path), "--backend", "onnxruntime", "--no-progress"]
    out, jsonl = tmp_path / "s.avi", tmp_path / "s.jsonl"
    proc = run_cli([*args, "--save", str(out), "--vid-stride", "4", "--jsonl", str(jsonl)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["processed_frames"] == 8
    assert [json.loads(x)["frame"] for x in jsonl.read_text().splitlines()] == list(range(0, 30, 4))
    assert frame_count(out)[0] == 30  # every frame is written, detected or not
    bad = run_cli([*args, "--classes", "dog"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown class 'dog'" in bad.stderr and "0=circle" in bad.stderr
    # --save onto the clip itself: refused before it is opened for writing (before: the clip was truncated).
    before = clip.read_bytes()
    bad = run_cli([*args, "--save", str(clip)], cwd=tmp_path)
    assert bad.returncode == 2 and "is the clip itself" in bad.stderr and clip.read_bytes() == before
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("not a video")
    bad = run_cli([*args[:1], str(notvideo), *args[2:]], cwd=tmp_path)
    assert bad.returncode == 2 and "not a video" in bad.stderr


def test_a_clip_with_damaged_frames_is_read_past_them(model_path: Path, tmp_path: Path) -> None:
    # Before: "error: ... the video cannot be decoded", exit 2, and the frames after the damaged one were lost.
    clip = write_mjpeg_of_sizes(tmp_path / "damaged.avi", [(160, 120)] * 8, damaged=frozenset({3}))
    args = ["predict", str(clip), "--model", str(model_path), "--backend", "onnxruntime", "--no-progress"]
    proc = run_cli([*args, "--save", str(tmp_path / "out.mp4"), "--jsonl", str(tmp_path / "out.jsonl")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert (summary["frames"], summary["processed_frames"], summary["damaged_frames"]) == (7, 7, [3])
    assert "damaged.avi: 1 frame(s) cannot be decoded (damaged data), skipped: 3" in proc.stderr
    lines = [json.loads(x)["frame"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines == [0, 1, 2, 4, 5, 6, 7]
    assert frame_count(tmp_path / "out.mp4")[0] == 7


def test_images_with_class_filter(dataset_dir: Path, model_path: Path, tmp_path: Path) -> None:
    images = sorted((dataset_dir / "images" / "test").glob("*.jpg"))[:3]
    base = ["predict", *map(str, images), "--model", str(model_path), "--backend", "onnxruntime", "--conf", "0.05"]
    only = run_cli([*base, "--classes", "circle,1"], cwd=tmp_path)
    assert only.returncode == 0, only.stderr[-2000:]
    with Detector.load(model_path, "onnxruntime") as det:
        for path, result in zip(images, json.loads(only.stdout), strict=True):
            every = det.predict(read_image(path), conf=0.05).to_list()
            assert result["detections"] == [d for d in every if d["class_id"] in (0, 1)]


def test_a_folder_of_images_with_a_bad_one_answers_every_other(dataset_dir: Path, model_path: Path, tmp_path: Path):
    # Before: a folder was "Is a directory", and one bad image among many ended the run with no result at all.
    folder = tmp_path / "photos"
    folder.mkdir()
    images = sorted((dataset_dir / "images" / "test").glob("*.jpg"))[:3]
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "b_cut.jpg").write_bytes(images[0].read_bytes()[:300])  # a download cut short
    (folder / "notes.txt").write_text("not an image, not looked at")
    (folder / "sub").mkdir()  # nor are subfolders
    base = ["predict", "--model", str(model_path), "--backend", "onnxruntime", "--conf", "0.05"]
    proc = run_cli([*base, str(folder)], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    names = sorted([*(image.name for image in images), "b_cut.jpg"])
    assert [Path(r["file"]).name for r in results] == names
    cut = results[names.index("b_cut.jpg")]
    assert set(cut) == {"file", "error"} and cut["error"].startswith(str(folder / "b_cut.jpg"))
    assert "1 of 4 images failed, the first: " in proc.stderr and "b_cut.jpg" in proc.stderr
    with Detector.load(model_path, "onnxruntime") as det:
        for result in results:
            if "error" not in result:
                assert result["detections"] == det.predict(read_image(result["file"]), conf=0.05).to_list()
    # A missing file, or a folder without images: refused before any image is read.
    for wrong, message in ((tmp_path / "nope.jpg", "image not found"), (folder / "sub", "a folder without images")):
        proc = run_cli([*base, str(folder), str(wrong)], cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and not proc.stdout, proc.stderr[-2000:]
