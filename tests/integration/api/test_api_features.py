"""The feature endpoints through the real app (real model, lifespan run by TestClient): the class filter, drawn
results, batches, video NDJSON with tracking, and Server-Timing; with their bad inputs (4xx, never 5xx, no
temporary file left behind)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.clips import confident_scene, write_moving_clip
from tests.integration.api.conftest import MakeConfig, RunApp


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def scene(model_path: Path, dataset_dir: Path) -> tuple[np.ndarray, str]:
    return confident_scene(model_path, dataset_dir)


@pytest.fixture(scope="module")
def video_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video-spool")


@pytest.fixture(scope="module")
def app(make_config: MakeConfig, run_app: RunApp, video_tmp: Path) -> Iterator[TestClient]:
    config = make_config(
        f"inference.server.video_tmp_dir={video_tmp}",
        "inference.server.max_batch_files=4",
        "inference.server.max_video_frames=40",
    )
    with run_app(config) as client:
        yield client


def server_timing(header: str) -> dict[str, float]:
    out = {}
    for entry in header.split(","):
        name, _, dur = entry.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def test_predict_has_server_timing_matching_timings_ms(app: TestClient, scene: tuple[np.ndarray, str]) -> None:
    r = app.post("/predict", files={"file": ("s.png", png(scene[0]), "image/png")})
    assert r.status_code == 200
    assert server_timing(r.headers["server-timing"]) == pytest.approx(r.json()["timings_ms"])
    assert list(server_timing(r.headers["server-timing"])) == list(r.json()["timings_ms"])


def test_class_filter_by_name_id_and_body(app: TestClient, scene: tuple[np.ndarray, str]) -> None:
    image, name = scene
    names = app.get("/model").json()["names"]
    cid = next(int(k) for k, v in names.items() if v == name)
    other = ",".join(v for v in names.values() if v != name)
    data = png(image)
    everything = app.post("/predict", params={"conf": 0.05}, files={"file": ("s.png", data, "image/png")}).json()
    assert {d["class_name"] for d in everything["detections"]} >= {name}
    for spec in (name, str(cid), f" {name.upper()} ", f"{cid},{name}"):
        r = app.post("/predict", params={"conf": 0.05, "classes": spec}, files={"file": ("s.png", data, "image/png")})
        assert r.status_code == 200, r.text
        kept = r.json()["detections"]
        assert kept and {d["class_name"] for d in kept} == {name}
        assert kept == [d for d in everything["detections"] if d["class_name"] == name]
    r = app.post("/predict", params={"conf": 0.05, "classes": other}, files={"file": ("s.png", data, "image/png")})
    assert name not in {d["class_name"] for d in r.json()["detections"]}
    body = {"image_base64": base64.b64encode(data).decode(), "classes": [cid]}
    r = app.post("/predict", params={"conf": 0.05}, json=body)
    assert r.status_code == 200 and {d["class_name"] for d in r.json()["detections"]} == {name}
    r = app.post(
        "/predict", params={"conf": 0.05}, data={"classes": name}, files={"file": ("s.png", data, "image/png")}
    )
    assert r.status_code == 200 and {d["class_name"] for d in r.json()["detections"]} == {name}


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"classes": "dog"}, 422, "unknown class 'dog'; the model's classes are 0=circle"),
        ({"classes": "7"}, 422, "unknown class '7'"),
        ({"classes": ""}, 422, "the filter is empty"),
        ({"classes": " , "}, 422, "the filter is empty"),
    ],
)
@pytest.mark.parametrize("route", ["/predict", "/predict/annotated", "/predict/batch", "/predict/video"])
def test_bad_class_filter_is_422_listing_classes(
    app: TestClient, route: str, params: dict[str, str], status: int, needle: str
) -> None:
    field = "files" if route.endswith("batch") else "file"
    r = app.post(route, params=params, files={field: ("s.png", png(np.zeros((8, 8, 3), np.uint8)), "image/png")})
    assert r.status_code == status and needle in r.json()["detail"], r.text


def test_class_filter_given_twice_is_400(app: TestClient) -> None:
    body = {"image_base64": base64.b64encode(png(np.zeros((8, 8, 3), np.uint8))).decode(), "classes": "circle"}
    r = app.post("/predict", params={"classes": "circle"}, json=body)
    assert r.status_code == 400 and "not both" in r.json()["detail"]


def test_annotated_is_a_jpeg_of_the_same_size_drawn_where_the_boxes_are(
    app: TestClient, scene: tuple[np.ndarray, str]
) -> None:
    image = scene[0]
    plain = app.post("/predict", files={"file": ("s.png", png(image), "image/png")}).json()
    r = app.post("/predict/annotated", files={"file": ("s.png", png(image), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "inference;dur=" in r.headers["server-timing"]
    assert int(r.headers["x-detection-count"]) == len(plain["detections"]) >= 1
    drawn = Image.open(io.BytesIO(r.content))
    assert drawn.format == "JPEG" and drawn.size == (image.shape[1], image.shape[0])
    diff = np.abs(np.asarray(drawn.convert("RGB"), np.int16) - image.astype(np.int16)).max(axis=2)
    box = plain["detections"][0]["box"]
    x1, y1, y2 = (round(box[k]) for k in ("x1", "y1", "y2"))
    edge = diff[max(y1 - 1, 0) : y2 + 2, max(x1 - 1, 0) : x1 + 2]  # the box's left edge, 1 px either side
    # A line along it: most rows have a strongly changed pixel. (Not the strip's mean: how much of the 4 px strip
    # the line covers, and how its class colour contrasts with the scene, vary with the model the test got; a model
    # trained under ONEDNN_MAX_CPU_ISA=AVX2 gave a mean of 35 for a drawn line.)
    assert (edge.max(axis=1) > 40).mean() > 0.8, "no box drawn on the detection's left edge"
    far = np.ones_like(diff, bool)
    for d in plain["detections"]:
        b = d["box"]
        far[max(int(b["y1"]) - 25, 0) : int(b["y2"]) + 4, max(int(b["x1"]) - 4, 0) : int(b["x2"]) + 60] = False
    if far.any():
        assert np.median(diff[far]) < 12, "the image changed away from the boxes (beyond JPEG noise)"


def test_annotated_include_json_and_json_body(app: TestClient, scene: tuple[np.ndarray, str]) -> None:
    body = {"image_base64": base64.b64encode(png(scene[0])).decode()}
    r = app.post("/predict/annotated", params={"include": "json"}, json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    payload = r.json()
    assert payload["detections"] and payload["image"] == {"width": scene[0].shape[1], "height": scene[0].shape[0]}
    drawn = Image.open(io.BytesIO(base64.b64decode(payload["annotated_image"]["base64"])))
    assert drawn.format == "JPEG" and drawn.size == (scene[0].shape[1], scene[0].shape[0])
    assert server_timing(r.headers["server-timing"]) == pytest.approx(payload["timings_ms"])
    assert app.post("/predict/annotated", params={"include": "xml"}, json=body).status_code == 422


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(buf, format="GIF")
    return buf.getvalue()


def test_batch_keeps_order_and_isolates_a_bad_image(app: TestClient, scene: tuple[np.ndarray, str]) -> None:
    image = scene[0]
    small = np.ascontiguousarray(image[: image.shape[0] // 2])
    files = [
        ("files", ("a.png", png(image), "image/png")),
        ("files", ("b.gif", gif(), "image/gif")),
        ("files", ("c.png", png(small), "image/png")),
        ("files", ("d.bin", b"not an image at all", "application/octet-stream")),
    ]
    r = app.post("/predict/batch", params={"classes": scene[1]}, files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 4
    single = app.post("/predict", params={"classes": scene[1]}, files={"file": ("a.png", png(image), "image/png")})
    assert results[0]["detections"] == single.json()["detections"]
    assert results[0]["image"] == {"width": image.shape[1], "height": image.shape[0]}
    assert results[1] == {"error": {"status": 415, "detail": results[1]["error"]["detail"]}}
    assert "GIF" in results[1]["error"]["detail"]
    assert results[2]["image"] == {"width": small.shape[1], "height": small.shape[0]}
    assert results[3]["error"]["status"] == 422
    assert "server-timing" in r.headers and "total" in r.json()["timings_ms"]


@pytest.mark.parametrize(
    ("files", "status", "needle"),
    [
        ([], 400, ""),  # no multipart body at all: not even a form
        ([("file", ("a.png", b"x", "image/png"))], 422, "use 'files', not 'file'"),
        ([("files", ("a.png", b"x", "image/png"))] * 5, 422, "at most 4 'files' parts"),
    ],
)
def test_batch_with_zero_or_too_many_parts(app: TestClient, files: list, status: int, needle: str) -> None:
    if files:
        r = app.post("/predict/batch", files=files)
    else:
        r = app.post("/predict/batch", content=b"", headers={"content-type": "application/json"})
        status, needle = 415, "multipart/form-data"
    assert r.status_code == status and needle in r.json()["detail"], r.text
    r = app.post("/predict/batch", data={"note": "hello"}, files=[("other", ("a", b"", "text/plain"))])
    assert r.status_code == 422 and "no images" in r.json()["detail"]


def ndjson(app: TestClient, clip: bytes, **params: object) -> tuple[int, list[dict], dict[str, str]]:
    with app.stream("POST", "/predict/video", params=params, files={"file": ("clip.mp4", clip, "video/mp4")}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
        return r.status_code, lines, dict(r.headers)


@pytest.fixture(scope="module")
def clip(scene: tuple[np.ndarray, str], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_moving_clip(scene[0], tmp_path_factory.mktemp("clip") / "clip.mp4", frames=30).read_bytes()


def test_video_streams_one_line_per_processed_frame_with_tracks(
    app: TestClient, clip: bytes, scene: tuple[np.ndarray, str], video_tmp: Path
) -> None:
    status, lines, headers = ndjson(app, clip, track="true", vid_stride=3, classes=scene[1])
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    assert "probe;dur=" in headers["server-timing"] and headers["x-video-frames"] == "30"
    assert [line["frame"] for line in lines] == list(range(0, 30, 3))
    assert lines[1]["time_s"] == pytest.approx(3 / 15)
    ids = {d["track_id"] for line in lines for d in line["detections"]}
    assert len(ids - {None}) == 1, f"the moving object should keep one track id, got {ids}"
    assert [d["track_id"] for d in lines[0]["detections"]] == [*ids - {None}], "tracks start on the first frame"
    status, lines, _ = ndjson(app, clip)
    assert status == 200 and len(lines) == 30 and all("track_id" not in d for ln in lines for d in ln["detections"])
    assert list(video_tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "name", "status", "needle"),
    [
        (b"hello, this is text" * 50, "notes.mp4", 415, "not a video"),
        ("png", "still.mp4", 415, "PNG image, not a video"),
        (b"", "empty.mp4", 400, "empty"),
        ("long", "long.mp4", 422, "limit is 40 (inference.server.max_video_frames)"),
        ("truncated", "cut.mp4", 415, "not a video"),
    ],
)
@pytest.mark.parametrize("as_body", [False, True], ids=["form", "body"])
def test_video_bad_input_is_4xx_and_leaves_nothing(
    app: TestClient, clip: bytes, video_tmp: Path, content: object, name: str, status: int, needle: str, as_body: bool
) -> None:
    if content == "png":
        content = png(np.zeros((16, 16, 3), np.uint8))
    elif content == "long":
        content = write_moving_clip(np.full((64, 64, 3), 90, np.uint8), video_tmp.parent / "long.mp4", 45).read_bytes()
    elif content == "truncated":
        content = clip[: len(clip) // 3]  # the index (moov) is at the end: cut off, nothing can be played
    if as_body:  # the clip itself as the body: the same checks, the same answers
        assert isinstance(content, bytes)
        r = app.post("/predict/video", content=content, headers={"content-type": "video/mp4"})
    else:
        r = app.post("/predict/video", files={"file": (name, content, "video/mp4")})
    assert r.status_code == status and needle in r.json()["detail"], r.text
    assert list(video_tmp.iterdir()) == []


@pytest.mark.parametrize("ctype", ["video/mp4", "application/octet-stream", "video/quicktime"])
def test_a_clip_sent_as_the_body_streams_the_same_lines_as_a_form(
    app: TestClient, clip: bytes, scene: tuple[np.ndarray, str], video_tmp: Path, ctype: str
) -> None:
    # `curl --data-binary @clip.mp4 -H 'content-type: video/mp4'`: the Content-Type names no container (the first
    # bytes do, as for a form's file), and the class filter is in the query.
    params = {"track": "true", "vid_stride": 2, "classes": scene[1]}
    _, want, _ = ndjson(app, clip, **params)
    with app.stream("POST", "/predict/video", params=params, content=clip, headers={"content-type": ctype}) as r:
        got = [json.loads(line) for line in r.iter_lines() if line]
        assert r.status_code == 200 and "probe;dur=" in r.headers["server-timing"]
    strip = [[{k: v for k, v in line.items() if k != "timings_ms"} for line in lines] for lines in (want, got)]
    assert strip[0] == strip[1] and len(got) == 15 and any(line["detections"] for line in got)
    assert list(video_tmp.iterdir()) == []


def test_a_clip_body_in_chunks_is_spooled_whole(app: TestClient, clip: bytes, video_tmp: Path) -> None:
    # Chunked (no Content-Length), in pieces smaller than the bytes that name the container.
    def pieces() -> Iterator[bytes]:
        for start in range(0, len(clip), 37):
            yield clip[start : start + 37]

    with app.stream("POST", "/predict/video", content=pieces(), headers={"content-type": "video/mp4"}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
        assert r.status_code == 200, r.read()
    assert [line["frame"] for line in lines] == list(range(30))
    assert list(video_tmp.iterdir()) == []


def test_video_wrong_form_is_4xx(app: TestClient) -> None:
    r = app.post("/predict/video", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"] and "'file'" in r.json()["detail"]
    assert "video/mp4" in r.json()["detail"]  # names the other way too
    r = app.post("/predict/video", content=b"\xff\xd8", headers={"content-type": "image/jpeg"})
    assert r.status_code == 415 and "'image/jpeg'" in r.json()["detail"]
    r = app.post("/predict/video", content=b"\0\0\0\x18ftypmp42")
    assert r.status_code == 400 and "missing Content-Type" in r.json()["detail"]
    r = app.post("/predict/video", data={"file": "text, not a file"}, files=[("x", ("a", b"1", "text/plain"))])
    assert r.status_code == 400 and "named 'file'" in r.json()["detail"]
    r = app.post("/predict/video", params={"vid_stride": 0}, files={"file": ("a.mp4", b"1", "video/mp4")})
    assert r.status_code == 422 and "vid_stride" in r.json()["detail"]
