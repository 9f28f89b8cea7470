"""Per-class thresholds end to end: computed on the real model's val split, written into a copy of its ONNX, served
by the real app under uvicorn on loopback (in this process: a subprocess would spend its start-up importing), applied
by default, overridden by `conf` and by `conf_per_class`."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import uvicorn
from PIL import Image

from api.app import create_app
from api.server import uvicorn_options
from detector.config import ThresholdsConfig
from detector.evaluation import list_images, read_rgb
from detector.evaluation.thresholds import compute_class_thresholds
from detector.runtime import Detector
from detector.runtime.metadata import read_onnx_metadata
from export.thresholds import add_class_thresholds
from tests.integration.api.conftest import MakeConfig
from tests.servers import free_port

DEFAULT_CONF = 0.25  # configs/inference.yaml


@dataclass(frozen=True)
class Witness:
    """A box whose confidence lies between the default conf and its class's threshold, in one image."""

    png: bytes
    class_id: int
    class_name: str
    score: float
    threshold: float


@pytest.fixture(scope="module")
def thresholded(model_path: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("thresholds") / "model.onnx"
    shutil.copy(model_path, copy)
    add_class_thresholds(copy, dataset_dir, ThresholdsConfig())
    return copy


@pytest.fixture(scope="module")
def witness(thresholded: Path, dataset_dir: Path) -> Witness:
    """The first box, over the dataset's images, that the default conf and its class's threshold treat apart."""
    metadata = read_onnx_metadata(thresholded)
    with Detector.load(thresholded, backend="onnxruntime", class_thresholds=False) as det:
        for split in ("val", "test", "train"):
            for path in list_images(dataset_dir, split):
                image = read_rgb(path)
                found = det.predict(image, conf=0.05)
                for score, cid in zip(found.confidence.tolist(), found.class_id.tolist(), strict=True):
                    t = metadata.class_conf.get(cid)
                    # A margin on each side: the service decodes the PNG itself; its scores may differ in the 4th
                    # decimal from the library's.
                    if t is not None and min(t, DEFAULT_CONF) + 0.01 < score < max(t, DEFAULT_CONF) - 0.01:
                        return Witness(_png(image), cid, metadata.names[cid], score, t)
    raise AssertionError(f"no box between conf {DEFAULT_CONF} and its class threshold ({metadata.class_conf})")


@pytest.fixture(scope="module")
def server(thresholded: Path, make_config: MakeConfig) -> Iterator[str]:
    """The base URL of the app serving the thresholded copy with the repository's configuration."""
    port = free_port()
    config = make_config(
        f"inference.model_path={thresholded}", "inference.backend=onnxruntime", f"inference.server.port={port}"
    )
    http = uvicorn.Server(uvicorn.Config(create_app(config), **uvicorn_options(config), log_config=None))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _ready(url):
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)
    yield url
    http.should_exit = True
    thread.join(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _png(image: npt.NDArray[np.uint8]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _predict(server: str, png: bytes, **params: str | float) -> httpx.Response:
    return httpx.post(server + "/predict", params=params, files={"file": ("w.png", png, "image/png")}, timeout=30)


def _has(response: httpx.Response, w: Witness) -> bool:
    assert response.status_code == 200, response.text
    return any(
        d["class_id"] == w.class_id and abs(d["confidence"] - w.score) < 0.005 for d in response.json()["detections"]
    )


def test_thresholds_are_computed_on_val_and_written_into_the_model(
    thresholded: Path, model_path: Path, dataset_dir: Path
) -> None:
    metadata = read_onnx_metadata(thresholded)
    with Detector.load(model_path, backend="onnxruntime") as det:
        expected = compute_class_thresholds(det, dataset_dir, ThresholdsConfig())
    assert metadata.class_conf == expected.values
    assert set(metadata.class_conf) == set(metadata.names)  # every class has objects on the quick val split
    assert all(0.05 <= t <= 0.95 for t in metadata.class_conf.values())
    assert metadata.class_conf_rule.startswith("max F1 at IoU 0.5 on val")
    assert read_onnx_metadata(model_path).names == metadata.names  # the rest of the metadata is kept


def test_service_applies_the_model_thresholds_and_conf_overrides_them(server: str, witness: Witness) -> None:
    info = httpx.get(server + "/model").json()
    assert info["class_conf_source"] == "model metadata"
    assert info["class_conf"][witness.class_name] == witness.threshold
    assert info["conf"] == DEFAULT_CONF

    kept_by_threshold = witness.score > witness.threshold  # the class's own threshold decides by default
    default = _predict(server, witness.png)
    assert _has(default, witness) is kept_by_threshold
    by_name = info["class_conf"]
    assert all(d["confidence"] > by_name[d["class_name"]] for d in default.json()["detections"])
    # A request's conf replaces every class's threshold: the same box is now treated the other way.
    assert _has(_predict(server, witness.png, conf=DEFAULT_CONF), witness) is not kept_by_threshold
    # conf_per_class overrides the named class only (query, and JSON body as an object).
    below, above = witness.score - 0.005, witness.score + 0.005
    assert _has(_predict(server, witness.png, conf_per_class=f"{witness.class_name}:{below:.4f}"), witness)
    assert not _has(_predict(server, witness.png, conf_per_class=f"{witness.class_id}:{above:.4f}"), witness)
    body = {"image_base64": base64.b64encode(witness.png).decode(), "conf_per_class": {witness.class_name: below}}
    assert _has(httpx.post(server + "/predict", json=body, timeout=30), witness)


def test_unknown_class_in_conf_per_class_is_a_short_422(server: str, witness: Witness) -> None:
    r = _predict(server, witness.png, conf_per_class="unicorn:0.5")
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "unicorn" in detail and len(detail) < 300
    batch = httpx.post(
        server + "/predict/batch",
        params={"conf_per_class": "unicorn:0.5"},
        files=[("files", ("w.png", witness.png, "image/png"))],
        timeout=30,
    )
    assert batch.status_code == 422 and "unicorn" in batch.json()["detail"]


def test_no_val_split_means_no_thresholds_and_inherited_ones_are_dropped(
    thresholded: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As the INT8 export does with a copy of the FP32 metadata: thresholds it cannot measure must not stay behind.
    copy = tmp_path / "bare.onnx"
    shutil.copy(thresholded, copy)
    with caplog.at_level(logging.INFO, logger="export.thresholds"):
        written = add_class_thresholds(copy, tmp_path / "no-dataset", ThresholdsConfig())
    assert written.class_conf == {} and read_onnx_metadata(copy).class_conf == {}
    assert [r.getMessage() for r in caplog.records if r.name == "export.thresholds"] == [
        f"no val split at {tmp_path / 'no-dataset' / 'images' / 'val'}: no per-class thresholds in the model "
        "(inference.conf applies)"
    ]


def test_cli_predict_applies_them_and_takes_conf_per_class(
    thresholded: Path, witness: Witness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main
    from tests.conftest import REPO

    image = tmp_path / "w.png"
    image.write_bytes(witness.png)
    base = ["--config-dir", str(REPO / "configs"), "predict", str(image), "--model", str(thresholded)]
    base += ["--backend", "onnxruntime"]

    def found(*extra: str) -> bool:
        assert main([*base, *extra]) == 0
        (result,) = json.loads(capsys.readouterr().out)
        return any(
            d["class_id"] == witness.class_id and abs(d["confidence"] - witness.score) < 0.005
            for d in result["detections"]
        )

    assert found() is (witness.score > witness.threshold)
    assert found("--conf", str(DEFAULT_CONF)) is (witness.score > DEFAULT_CONF)
    assert found("--conf-per-class", f"{witness.class_name}:{witness.score - 0.005:.4f}")
    assert main([*base, "--conf-per-class", "unicorn:0.5"]) == 2
    assert "unknown class 'unicorn'" in capsys.readouterr().err
