"""Every architecture `make experiments` trains goes through the whole pipeline, on tiny settings: data -> train ->
export -> quantize -> evaluate -> serve -> predict. The list comes from configs/experiments.yaml (the plan
scripts/experiments.py runs), so an architecture added there is tested here, and one that breaks fails here first.

What each must do: the INT8 step is *accepted* (a Q/DQ graph that TensorRT's explicit quantization, OpenVINO and
ONNX Runtime all take: per-tensor activation scales, per-channel weight scales, zero points 0), both CPU backends
load it, the evaluate stage scores FP32 and INT8, and `detector serve` answers /predict with boxes in the image.
The gate is opened wide: a one-epoch model's mAP is noise (the gate itself is tested in test_int8.py).

The default configuration's architecture is not repeated here: `tests/e2e/test_dvc.py` runs it through `dvc repro`
(every stage, the quantize stage included) and serves its INT8 model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import onnx
import pytest
import yaml

from detector.runtime import Detector
from scripts.experiments import architectures, load_plan
from tests.conftest import REPO
from tests.servers import serving

TINY = [
    "data.splits.train=16",
    "data.splits.val=8",
    "data.splits.test=4",
    "data.imgsz=64",
    "train.imgsz=64",
    "train.epochs=1",
    "train.batch=8",
    "train.mlflow.enabled=false",
    "export.int8.subset_size=16",
    "export.int8.max_map_drop=1.0",
    "export.int8.max_class_drop=1.0",
    "quality.backends=[onnxruntime]",  # the quality report's OpenVINO rows are covered by the quick pipeline's
]
STAGES = [
    ["data", "generate"],
    ["train"],
    ["export", "onnx"],
    ["export", "int8", "--report", "reports/quantize.json"],
    ["evaluate", "--no-register"],
]
# The stages in one interpreter (torch and ultralytics are imported once, not five times), each as `detector ...`.
RUNNER = """
import sys
from cli.main import main
stages, overrides = {stages!r}, sys.argv[1:]
for stage in stages:
    code = main(["--config-dir", {configs!r}, *stage, *overrides])
    if code:
        sys.exit(f"detector {{' '.join(stage)}} exited {{code}}")
"""


def run_pipeline(workdir: Path, arch: str) -> subprocess.CompletedProcess[str]:
    script = RUNNER.format(stages=STAGES, configs=str(REPO / "configs"))
    return subprocess.run(
        [sys.executable, "-c", script, *TINY, f"train.model={arch}"],
        cwd=workdir,
        env={**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )


DEFAULT_ARCH = yaml.safe_load((REPO / "configs" / "train.yaml").read_text())["train"]["model"]


@pytest.mark.parametrize("arch", [a for a in architectures(load_plan()) if a != DEFAULT_ARCH])
def test_architecture_goes_through_the_whole_pipeline(arch: str, tmp_path: Path) -> None:
    proc = run_pipeline(tmp_path, arch)
    assert proc.returncode == 0, f"{arch}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"

    report = json.loads((tmp_path / "reports/quantize.json").read_text())
    assert report["status"] == "accepted", report.get("reason")
    assert report["quantization"]["tensorrt_compatible"] is True
    int8 = tmp_path / report["model"]
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8)).graph.node)

    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert metrics["model"]["name"] == Path(arch).stem
    assert metrics["int8"]["status"] == "accepted" and "mAP50-95" in metrics["int8"]["val"]
    assert 0 <= metrics["val"]["mAP50-95"] <= 1

    image = sorted((tmp_path / "data/v1/images/test").glob("*.jpg"))[0]
    for backend in ("onnxruntime", "openvino"):
        with Detector.load(int8, backend=backend) as det:
            assert det.describe()["precision"] == "int8"

    with serving(int8, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        model = http.get("/model").json()
        assert model["precision"] == "int8" and model["input_size"] == [64, 64]
        r = http.post("/predict?conf=0.001&max_det=5", files={"file": (image.name, image.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["image"] == {"width": 64, "height": 64} and body["model"]["name"] == Path(arch).stem
        assert len(body["detections"]) <= 5
        for d in body["detections"]:
            box = d["box"]
            assert 0 <= box["x1"] <= box["x2"] <= 64 and 0 <= box["y1"] <= box["y2"] <= 64
