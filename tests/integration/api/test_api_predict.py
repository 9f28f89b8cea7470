"""POST /predict on real images with the real trained model: the HTTP answer equals `Detector.predict`."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.schemas import ModelInfo, PredictionResponse
from detector.runtime import Detector
from detector.runtime.images import decode_image

LOW_CONF = 0.05  # the quick model is weak; a low threshold gives every image several boxes to compare


@pytest.fixture(scope="module")
def client(make_config: Any, run_app: Any) -> Iterator[TestClient]:
    """Exact decoding (full-size JPEGs), as the library and Ultralytics decode: these tests compare with them.
    The default `decode_mode: reduced` is tested in tests/integration/api/test_hostile_clients.py."""
    with run_app(make_config("inference.server.decode_mode=exact")) as c:
        yield c


@pytest.fixture(scope="module")
def reference(client: TestClient, model_path: Path) -> Iterator[Detector]:
    """The library's Detector on the same backend the service picked."""
    backend = client.get("/model").json()["backend"]
    with Detector.load(model_path, backend=backend) as det:
        yield det


def expected(det: Detector, data: bytes, **kw: Any) -> list[dict[str, Any]]:
    return det.predict(decode_image(data), **kw).to_list()


def assert_same_detections(got: list[dict[str, Any]], want: list[dict[str, Any]], box_tol: float = 0.011) -> None:
    """Same classes in the same order, boxes equal to 2 decimals, scores to 4."""
    assert [d["class_id"] for d in got] == [d["class_id"] for d in want]
    for g, w in zip(got, want, strict=True):
        assert g["class_name"] == w["class_name"]
        assert g["confidence"] == pytest.approx(w["confidence"], abs=1e-4)
        for k in ("x1", "y1", "x2", "y2"):
            assert g["box"][k] == pytest.approx(w["box"][k], abs=box_tol)


def val_images(dataset_dir: Path, n: int) -> list[Path]:
    return sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:n]


def test_multipart_json_and_raw_bodies_match_the_library(
    client: TestClient, reference: Detector, dataset_dir: Path
) -> None:
    n_boxes = 0
    for path in val_images(dataset_dir, 6):
        data = path.read_bytes()
        want = expected(reference, data, conf=LOW_CONF)
        r1 = client.post(f"/predict?conf={LOW_CONF}", files={"file": (path.name, data, "image/jpeg")})
        r2 = client.post(f"/predict?conf={LOW_CONF}", json={"image_base64": base64.b64encode(data).decode()})
        # The image as the body; its bytes say what it is, whatever image/* the header names
        r3 = client.post(f"/predict?conf={LOW_CONF}", content=data, headers={"Content-Type": "image/jpeg"})
        r4 = client.post(f"/predict?conf={LOW_CONF}", content=data, headers={"Content-Type": "image/png"})
        r5 = client.post(
            f"/predict?conf={LOW_CONF}", content=data, headers={"Content-Type": "application/octet-stream"}
        )
        for r in (r1, r2, r3, r4, r5):
            assert r.status_code == 200, r.text
            assert_same_detections(r.json()["detections"], want)
            assert r.json()["image"] == {"width": 128, "height": 128}
        n_boxes += len(want)
    assert n_boxes > 0, "the comparison is vacuous without boxes"


def test_real_photos_match_the_library(client: TestClient, reference: Detector, sample_photos: list[Path]) -> None:
    for path in sample_photos:
        data = path.read_bytes()
        with Image.open(path) as img:
            width, height = img.size
        r = client.post("/predict?conf=0.01&max_det=50", files={"file": (path.name, data, "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["image"] == {"width": width, "height": height}
        assert_same_detections(body["detections"], expected(reference, data, conf=0.01, max_det=50))
        assert len(body["detections"]) <= 50


def test_response_shape_and_timings(client: TestClient, dataset_dir: Path) -> None:
    data = val_images(dataset_dir, 1)[0].read_bytes()
    r = client.post("/predict", files={"file": ("a.jpg", data, "image/jpeg")})
    body = PredictionResponse.model_validate(r.json())  # the shared payload matches the documented schema
    info = client.get("/model").json()
    assert body.model.model_dump() == {k: info[k] for k in ("name", "version", "backend")}
    stages = {"read", "decode", "queue_wait", "preprocess", "inference", "postprocess", "total"}
    assert set(body.timings_ms) == stages
    assert body.timings_ms["total"] >= body.timings_ms["inference"] > 0
    assert r.headers["X-Batch-Size"] == "1"


def test_query_parameters_are_applied(client: TestClient, reference: Detector, sample_photos: list[Path]) -> None:
    data = sample_photos[0].read_bytes()
    few = client.post("/predict?conf=0.01&max_det=3", files={"file": ("b.jpg", data, "image/jpeg")}).json()
    assert len(few["detections"]) == 3
    # A raw body takes its class filter from the query: the same answer as a form with the same query
    query = "/predict?conf=0.01&classes=circle"
    raw = client.post(query, content=data, headers={"Content-Type": "image/jpeg"}).json()
    form = client.post(query, files={"file": ("b.jpg", data, "image/jpeg")}).json()
    assert raw["detections"] == form["detections"] and {d["class_name"] for d in raw["detections"]} == {"circle"}
    strict = client.post("/predict?conf=0.99", files={"file": ("b.jpg", data, "image/jpeg")}).json()
    assert strict["detections"] == expected(reference, data, conf=0.99)
    loose_iou = client.post("/predict?conf=0.01&iou=0.95", files={"file": ("b.jpg", data, "image/jpeg")}).json()
    assert_same_detections(loose_iou["detections"], expected(reference, data, conf=0.01, iou=0.95))


def test_exif_orientation_is_applied(client: TestClient, reference: Detector, dataset_dir: Path) -> None:
    """A 200x100 JPEG tagged "rotate 90°" displays as 100x200: boxes must be in that displayed frame."""
    src = Image.open(val_images(dataset_dir, 2)[1]).resize((200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    buf = io.BytesIO()
    src.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    data = buf.getvalue()
    r = client.post(f"/predict?conf={LOW_CONF}", files={"file": ("r.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 100, "height": 200}
    assert_same_detections(r.json()["detections"], expected(reference, data, conf=LOW_CONF))
    for d in r.json()["detections"]:
        assert 0 <= d["box"]["x1"] <= d["box"]["x2"] <= 100 + 0.01
        assert 0 <= d["box"]["y1"] <= d["box"]["y2"] <= 200 + 0.01


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("RGB", "BMP"), ("RGB", "WEBP"), ("LA", "PNG")],
)
def test_unusual_but_valid_images(client: TestClient, dataset_dir: Path, mode: str, fmt: str) -> None:
    src = Image.open(val_images(dataset_dir, 1)[0]).convert("RGB").resize((96, 64))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(src.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    else:
        img = src.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    r = client.post("/predict", files={"file": (f"x.{fmt.lower()}", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 96, "height": 64}


def test_data_url_prefix_is_accepted(client: TestClient, dataset_dir: Path) -> None:
    data = val_images(dataset_dir, 1)[0].read_bytes()
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    plain = client.post("/predict", json={"image_base64": base64.b64encode(data).decode()}).json()
    r = client.post("/predict", json={"image_base64": url})
    assert r.status_code == 200, r.text
    assert r.json()["detections"] == plain["detections"]


def test_model_health_metrics_docs(client: TestClient) -> None:
    info = ModelInfo.model_validate(client.get("/model").json())
    assert info.names == {"0": "circle", "1": "square", "2": "triangle"}
    assert info.input_size == [128, 128]
    assert 1 <= info.max_batch <= 8
    health = client.get("/health").json()
    assert health == {"status": "ok", "backend": info.backend, "model_version": info.version}
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "detector_http_requests_total",
        "detector_http_request_duration_seconds_bucket",
        "detector_inference_seconds_bucket",
        "detector_batch_size_bucket",
        "detector_queue_depth",
        "detector_stage_seconds_bucket",
        "detector_drift_window_images",
    ):
        assert name in metrics.text
    assert 'route="/model"' in metrics.text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json", "image/*", "application/octet-stream"}
    assert content["image/*"]["schema"] == {"type": "string", "format": "binary"}  # Swagger offers a file
    clip = spec["paths"]["/predict/video"]["post"]["requestBody"]["content"]
    assert set(clip) == {"multipart/form-data", "video/*", "application/octet-stream"}
    assert clip["video/*"]["schema"] == {"type": "string", "format": "binary"}
    example = content["application/json"]["examples"]["png"]["value"]
    r = client.post("/predict", json=example)  # the documented example really works
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 64, "height": 64}
