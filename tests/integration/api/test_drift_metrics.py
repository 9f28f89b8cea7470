"""Drift in /metrics through the real app: a model that carries a reference profile gets PSI gauges that stay low
for traffic like its data and jump for darker images. (A model without one exports no PSI: test_api_predict.py.)"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from detector.evaluation.evaluate import list_images, read_rgb
from detector.evaluation.profile import reference_profile
from detector.runtime import Detector
from detector.runtime.metadata import METADATA_KEY, ModelMetadata
from tests.integration.api.conftest import MakeConfig, RunApp


@pytest.fixture(scope="module")
def profiled_model(model_path: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model with the train split's reference profile in its metadata."""
    with Detector.load(model_path, backend="onnxruntime") as detector:
        profile = reference_profile(detector, dataset_dir, "train")
    proto = onnx.load(str(model_path))
    props = {p.key: p.value for p in proto.metadata_props}
    metadata = dataclasses.replace(ModelMetadata.from_json(props[METADATA_KEY]), reference_profile=profile)
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = metadata.to_json()
    out = tmp_path_factory.mktemp("profiled") / "model.onnx"
    onnx.save(proto, str(out))
    return out


def jpegs(dataset_dir: Path, gain: float = 1.0) -> list[bytes]:
    out = []
    for split in ("val", "test"):
        for path in list_images(dataset_dir, split):
            rgb = (read_rgb(path) * gain).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            out.append(buf.tobytes())
    return out


def gauge(client: TestClient, name: str, statistic: str | None = None) -> float | None:
    text = client.get("/metrics").text
    labels = f'{{statistic="{statistic}"}}' if statistic else ""
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def send(client: TestClient, images: list[bytes]) -> None:
    for data in images:
        assert client.post("/predict", files={"file": ("a.jpg", data, "image/jpeg")}).status_code == 200


def test_psi_gauges_stay_low_for_like_traffic_and_jump_for_darker_images(
    profiled_model: Path, dataset_dir: Path, make_config: MakeConfig, run_app: RunApp
) -> None:
    normal = jpegs(dataset_dir)  # 60 images: val + test, none of them in the reference
    config = make_config(
        f"inference.model_path={profiled_model}",
        f"inference.drift.window={len(normal)}",
        "inference.drift.min_images=30",
    )
    with run_app(config) as client:
        send(client, normal[:10])
        assert np.isnan(gauge(client, "detector_drift_psi", "brightness") or 0.0)  # too few images to judge
        send(client, normal[10:])
        assert gauge(client, "detector_drift_window_images") == len(normal)
        assert (gauge(client, "detector_drift_psi", "brightness") or 1.0) < 0.25
        assert (gauge(client, "detector_drift_psi", "class") or 1.0) < 0.25
        send(client, jpegs(dataset_dir, gain=0.35))  # the window now holds only dark images
        assert (gauge(client, "detector_drift_psi", "brightness") or 0.0) > 0.5
        assert 'detector_drift_share{bin="0",source="live",statistic="brightness"}' in client.get("/metrics").text


def test_the_inbox_keeps_images_the_reference_profile_never_had(
    profiled_model: Path, dataset_dir: Path, make_config: MakeConfig, run_app: RunApp, tmp_path: Path
) -> None:
    """`inference.inbox.drift_outlier_share`: images twice the side of every training image (an image-size bin the
    profile never filled) are kept with reason drift:image_pixels; ordinary ones are not. The confidence band is
    empty, so nothing is kept for confidence."""
    root = tmp_path / "inbox"
    config = make_config(
        f"inference.model_path={profiled_model}",
        "inference.inbox.enabled=true",
        f"inference.inbox.dir={root}",
        "inference.inbox.conf_band=[0,0]",
        "inference.inbox.drift_outlier_share=0.01",
    )
    bigger = []
    for data in jpegs(dataset_dir)[:5]:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        bigger.append(cv2.imencode(".jpg", cv2.resize(image, None, fx=2, fy=2))[1].tobytes())

    def kept() -> int:
        return len(list((root / "images").glob("*"))) if (root / "images").is_dir() else 0

    with run_app(config) as client:
        send(client, jpegs(dataset_dir)[:10])
        time.sleep(0.3)  # the writer thread has written anything it was given by now
        ordinary = kept()
        send(client, bigger)
        deadline = time.monotonic() + 10
        while kept() < ordinary + len(bigger) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert ordinary <= 2, "ordinary images are like the reference: few if any are outliers"
    journal = [json.loads(line) for line in (root / "inbox.jsonl").read_text().splitlines()]
    assert len(journal) == ordinary + len(bigger)
    assert all("drift:image_pixels" in record["reasons"] for record in journal[ordinary:])
    assert all(r.startswith("drift:") for record in journal for r in record["reasons"])
