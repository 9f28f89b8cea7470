"""`dvc repro` from a clean clone of the project runs the whole pipeline; push/pull round-trips the outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.project_clone import copy_project, init_repo, run_ok
from tests.servers import serving

pytest.importorskip("dvc")


def _set(path: Path, section: str, values: dict[str, object]) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in values.items():
        node = data[section]
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data))


def test_dvc_repro_from_a_clean_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    copy_project(clone)
    _set(clone / "configs/data.yaml", "data", {"imgsz": 96, "splits.train": 48, "splits.val": 12, "splits.test": 8})
    _set(clone / "configs/train.yaml", "train", {"imgsz": 96, "epochs": 1, "batch": 16})
    # Exported at another size than trained; a small INT8 calibration set. The gate is opened wide: a 1-epoch model
    # has a near-zero mAP, so a drop limit would only measure noise (the gate itself is tested in test_int8.py).
    _set(
        clone / "configs/export.yaml",
        "export",
        {"imgsz": 64, "int8.subset_size": 16, "int8.max_map_drop": 1.0, "int8.max_class_drop": 1.0},
    )
    # One backend in the quality report: its OpenVINO rows are covered by the quick pipeline (CI's time budget).
    _set(clone / "configs/quality.yaml", "quality", {"backends": ["onnxruntime"]})
    init_repo(clone)

    run_ok(["dvc", "repro"], clone)
    assert (clone / "models/model.onnx").is_file() and (clone / "dvc.lock").is_file()
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    stages = {"data@v1", "data@v2", "data@small", "tiles", "train", "export", "quantize", "evaluate", "benchmark"}
    assert set(lock["stages"]) == stages
    tiles = json.loads((clone / "data/small-tiles/manifest.json").read_text())  # the small preset, cut into tiles
    assert tiles["tile"] == [256, 256] and tiles["tiles"]["train"] == 3 * 36
    assert "summary" in json.loads((clone / "reports/benchmark.json").read_text())
    metrics = json.loads(run_ok(["dvc", "metrics", "show", "--json"], clone).stdout)
    assert "reports/metrics.json" in json.dumps(metrics)
    quantized = json.loads((clone / "reports/quantize.json").read_text())
    assert quantized["status"] == "accepted", quantized.get("reason")
    assert json.loads((clone / "reports/metrics.json").read_text())["int8"]["status"] == "accepted"  # both scored
    int8 = clone / quantized["model"]
    image = sorted((clone / "data/v1/images/test").glob("*.jpg"))[0]
    with serving(int8, tmp_path) as server:  # the default architecture, served from its INT8 model
        assert httpx.get(server.url + "/model").json()["precision"] == "int8"
        r = httpx.post(server.url + "/predict", files={"file": (image.name, image.read_bytes(), "image/jpeg")})
        assert r.status_code == 200 and r.json()["image"] == {"width": 96, "height": 96}
    status = run_ok(["dvc", "status"], clone).stdout
    assert "up to date" in status
    # The benchmark stage measured the model it benchmarks at that model's size, not at train.imgsz.
    assert json.loads((clone / "reports/benchmark.json").read_text())["settings"]["sizes"] == [64]

    # Each stage declares the code it runs: editing a file makes exactly the stages that read it out of date.
    data_readers = {"data@v1", "data@v2", "data@small", "tiles", "train", "export", "quantize", "evaluate"}
    expected = {
        "cli/stages.py": {"data@v1", "data@v2", "data@small", "train", "export", "quantize", "evaluate", "benchmark"},
        # export measures per-class thresholds and the drift profile on the data through the runtime
        "detector/data/yolo_format.py": data_readers,
        "detector/data/tiles.py": data_readers,
        "export/onnx.py": {"export"},
        "detector/runtime/preprocess.py": {"export", "quantize", "evaluate", "benchmark"},
        "api/app.py": set(),  # the service is no stage's code
    }
    for rel, stages in expected.items():
        original = (clone / rel).read_bytes()
        (clone / rel).write_bytes(original + b"\n# edited\n")
        try:
            stale = set(json.loads(run_ok(["dvc", "status", "--json"], clone).stdout or "{}"))
        finally:
            (clone / rel).write_bytes(original)
        assert stale == stages, rel

    # The embedded remote: push everything, delete the outputs, pull them back bit-identical.
    onnx_bytes = (clone / "models/model.onnx").read_bytes()
    run_ok(["dvc", "push"], clone)
    shutil.rmtree(clone / "models")
    shutil.rmtree(clone / "data")
    run_ok(["dvc", "pull"], clone)
    assert (clone / "models/model.onnx").read_bytes() == onnx_bytes
    assert (clone / "data/v1/data.yaml").is_file()
