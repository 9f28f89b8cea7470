"""The promotion gate on real models: the trained model, and a copy whose classification head no longer predicts one
class (its output channel zeroed in every detection-head branch, its bias pushed far negative), exported by the
project's exporter and scored by the quality report. Registered in a real MLflow SQLite store, the damaged copy is
refused with a message naming the class, by the evaluate stage's registration and by `detector registry promote`;
the good model becomes champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")
torch = pytest.importorskip("torch")

from cli.main import main  # noqa: E402
from cli.stages import promotion_gate  # noqa: E402
from detector.config import Config, MlflowConfig, QualityConfig, TrainConfig  # noqa: E402
from detector.evaluation import read_rgb  # noqa: E402
from detector.evaluation.gate import gate_record, record_to_tags  # noqa: E402
from detector.evaluation.quality import quality_report  # noqa: E402
from detector.evaluation.reference import pt_detections  # noqa: E402
from detector.runtime import Detector  # noqa: E402
from detector.runtime.metadata import read_onnx_metadata  # noqa: E402
from detector.training.tracking import register_champion  # noqa: E402

REPO = Path(__file__).resolve().parents[4]
DAMAGED_CLASS = 1  # "square" in the quick dataset


def damage_class(weights: Path, out: Path, cls: int) -> str:
    """A copy of `weights` that cannot predict class `cls`; returns that class's name."""
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    model = ckpt["model"]
    head = model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:  # one classification branch per detection scale (YOLOv8)
            conv = branch[-1]  # the last 1x1 conv: one output channel per class
            conv.weight[cls] = 0.0
            conv.bias[cls] = -20.0  # sigmoid(-20) ~ 2e-9: a zero bias would leave the class at 0.5 everywhere
    torch.save(ckpt, out)
    return str(model.names[cls])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, weights_path: Path, model_path: Path) -> dict[str, Any]:
    from export.onnx import export_onnx

    tmp = tmp_path_factory.mktemp("gate")
    name = damage_class(weights_path, tmp / "damaged.pt", DAMAGED_CLASS)
    imgsz = max(read_onnx_metadata(model_path).imgsz)
    # simplify=False: onnxslim's pass costs ~10 s here and changes nothing the gate measures.
    export_onnx(tmp / "damaged.pt", tmp / "damaged.onnx", imgsz=imgsz, simplify=False)
    return {"tmp": tmp, "class": name, "imgsz": imgsz, "good": model_path, "damaged": tmp / "damaged.onnx"}


def report(weights: Path, onnx: Path, dataset_dir: Path, imgsz: int, backends: list[str]) -> dict[str, Any]:
    rules = QualityConfig(backends=backends)
    reference = pt_detections(weights, dataset_dir, rules.split, imgsz, rules.parity_conf)
    return quality_report({"fp32": onnx}, dataset_dir, rules, reference)


def test_the_damaged_class_really_is_gone(models: dict[str, Any], dataset_dir: Path) -> None:
    image = next((dataset_dir / "images/val").iterdir())
    with Detector.load(models["damaged"], backend="onnxruntime") as detector:
        found = detector.predict(read_rgb(image), conf=0.0, max_det=1000)
    scores = found.confidence[found.class_id == DAMAGED_CLASS]
    assert len(found) and (not len(scores) or float(scores.max()) < 1e-3)


def test_the_gate_refuses_the_damaged_model_naming_its_class_and_promotes_the_good_one(
    models: dict[str, Any],
    weights_path: Path,
    dataset_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    imgsz, cls = models["imgsz"], models["class"]
    good = report(weights_path, models["good"], dataset_dir, imgsz, ["onnxruntime"])
    damaged = report(models["tmp"] / "damaged.pt", models["damaged"], dataset_dir, imgsz, ["onnxruntime"])
    for row in damaged["models"].values():  # the damaged model agrees with its own .pt: only the class rule catches it
        assert row["per_class"][cls]["AP50-95"] == 0.0 and row["parity"] >= 0.9
    assert good["models"]["fp32_onnxruntime"]["per_class"][cls]["AP50-95"] > 0.5

    uri = f"sqlite:///{models['tmp'] / 'mlflow.db'}"
    config = Config(train=TrainConfig(mlflow=MlflowConfig(tracking_uri=uri, experiment="gate")))
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("gate")
    run_ids = []
    for _ in range(2):
        with mlflow.start_run() as run:
            run_ids.append(run.info.run_id)

    def register(run_id: str, onnx: Path, quality: dict[str, Any]) -> dict[str, Any]:
        value = quality["models"]["fp32_onnxruntime"]["mAP50-95"]
        record = gate_record(quality, overall=value)
        gate = promotion_gate(config, record)
        return register_champion(config.train.mlflow, run_id, onnx, value, "{}", record_to_tags(record), gate)

    first = register(run_ids[0], models["good"], good)
    assert first["promoted"] is True and "refused" not in first
    refused = register(run_ids[1], models["damaged"], damaged)
    assert refused["promoted"] is False and refused["version"] != first["version"]
    assert refused["refused"].startswith(f"class '{cls}' on onnxruntime: AP50-95 0.000 vs ")
    assert "circle" not in refused["refused"] and "triangle" not in refused["refused"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("yolo-detector", "champion").version) == first["version"]
    assert cls in client.get_run(run_ids[1]).data.tags["gate.refused"]

    # The command re-checks a registered version the same way: exit 2, one line naming the class.
    argv = ["--config-dir", str(REPO / "configs"), "registry", "promote", f"train.mlflow.tracking_uri={uri}"]
    assert main([*argv, "--version", refused["version"]]) == 2
    assert f"not promoted to @champion: class '{cls}' on onnxruntime: AP50-95 0.000" in capsys.readouterr().err
    assert str(client.get_model_version_by_alias("yolo-detector", "champion").version) == first["version"]
