"""The real pipeline on the quick profile: artifacts, metrics, MLflow run contents, the champion rule, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from detector.runtime import Detector
from detector.runtime.metadata import read_onnx_metadata, sha256_file
from tests.conftest import QUICK_OVERRIDES, run_cli

mlflow = pytest.importorskip("mlflow")


def _json(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_artifacts_exist_and_the_onnx_carries_provenance(quick_pipeline: Path) -> None:
    for rel in (
        "models/best.pt",
        "models/model.onnx",
        "reports/train.json",
        "reports/metrics.json",
        "reports/train_curves.csv",
        "data/v1/data.yaml",
        "data/v1/manifest.json",
    ):
        assert (quick_pipeline / rel).is_file(), rel
    train = _json(quick_pipeline / "reports/train.json")
    meta = read_onnx_metadata(quick_pipeline / "models/model.onnx")
    assert meta.names == {0: "circle", 1: "square", 2: "triangle"}
    assert meta.imgsz == (128, 128) and meta.head == "raw" and meta.dataset_version == "v1"
    assert meta.source_run_id == train["run_id"] != ""
    assert meta.weights_sha256 == train["weights_sha256"] == sha256_file(quick_pipeline / "models/best.pt")
    assert meta.version.startswith("yolov8n-v1-")
    with Detector.load(quick_pipeline / "models/model.onnx", backend="onnxruntime") as det:
        assert det.input_shape == (128, 128)


def test_metrics_are_in_range_and_match_ultralytics(quick_pipeline: Path) -> None:
    metrics = _json(quick_pipeline / "reports/metrics.json")
    for split in ("val", "test", "ultralytics_val_pt"):
        for key in ("mAP50", "mAP50-95", "precision", "recall"):
            assert 0.0 <= metrics[split][key] <= 1.0, (split, key)
    assert metrics["val"]["mAP50"] >= metrics["val"]["mAP50-95"]
    assert metrics["val"]["mAP50"] > 0.05, "the quick model learned nothing"
    # mAP through our runtime (ONNX) vs Ultralytics' own validation of the .pt it was exported from.
    assert abs(metrics["val"]["mAP50-95"] - metrics["ultralytics_val_pt"]["mAP50-95"]) <= 0.005
    assert abs(metrics["val"]["mAP50"] - metrics["ultralytics_val_pt"]["mAP50"]) <= 0.005


def test_quality_report_has_every_class_on_every_backend_and_parity_with_the_pt(quick_pipeline: Path) -> None:
    quality = _json(quick_pipeline / "reports/metrics.json")["quality"]
    models = quality["models"]
    assert {"pt_ultralytics", "fp32_onnxruntime", "fp32_openvino"} <= set(models)
    assert "tensorrt" in quality["skipped"] or "fp32_tensorrt" in models  # never silently left out
    for key in ("pt_ultralytics", "fp32_onnxruntime", "fp32_openvino"):
        assert set(models[key]["per_class"]) == {"circle", "square", "triangle"}, key
    ort = models["fp32_onnxruntime"]
    assert ort["mAP50-95"] == _json(quick_pipeline / "reports/metrics.json")["val"]["mAP50-95"]
    for name, row in ort["per_class"].items():  # the exported model keeps every class of the .pt
        assert abs(row["AP50-95"] - models["pt_ultralytics"]["per_class"][name]["AP50-95"]) <= 0.01, name
    assert ort["parity"] >= 0.95 and models["fp32_openvino"]["parity"] >= 0.95


def test_mlflow_run_holds_config_data_and_artifacts(quick_pipeline: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{quick_pipeline / 'mlflow.db'}")
    run = client.get_run(_json(quick_pipeline / "reports/train.json")["run_id"])
    epochs = dict(o.split("=", 1) for o in QUICK_OVERRIDES)["train.epochs"]  # what the fixture trained with
    assert run.data.params["train.epochs"] == epochs and run.data.params["data.version"] == "v1"
    assert "inference.conf" not in run.data.params  # serving config is not a training parameter
    tags = run.data.tags
    assert tags["data.version"] == "v1" and len(tags["data.sha256"]) == 64 and tags["git_commit"]
    # The thread counts it trained on, set by its callbacks: the suite's (tests/conftest.py) unless one runs it on auto
    given, counts = os.environ["DETECTOR_TRAIN__THREADS"], tags["cpu_threads"].split(",")
    assert counts == [given] if given != "auto" else all(c.isdigit() for c in counts)
    history = client.get_metric_history(run.info.run_id, "val_mAP50-95")
    assert [m.step for m in history] == list(range(1, int(epochs) + 1))
    assert "final_val_mAP50-95" in run.data.metrics and "onnx_val_mAP50-95" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"weights", "reports"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "reports")} >= {
        "reports/metrics.json",
        "reports/train_curves.csv",
        "reports/train.json",
    }
    # The evaluate stage registered this run's ONNX with its val mAP50-95, in a registry that was empty (the
    # fixture's own mlflow.db), so it became the champion.
    metrics = _json(quick_pipeline / "reports/metrics.json")
    registry = metrics["registry"]
    assert registry["promoted"] is True and registry["previous_champion"] is None
    assert registry["value"] == metrics["val"]["mAP50-95"]
    ours = client.get_model_version("yolo-detector", registry["version"])
    assert ours.run_id == run.info.run_id and float(ours.tags["val_mAP50-95"]) == registry["value"]
    champion = client.get_model_version_by_alias("yolo-detector", "champion")
    assert str(champion.version) == registry["version"] and champion.run_id == run.info.run_id
    # The quality report: per-class metrics per backend, its table, and the record the next gate compares with.
    assert "refused" not in registry and "gate.refused" not in champion.tags
    assert {"val_onnxruntime_fp32_AP50-95_circle", "val_openvino_fp32_parity"} <= set(run.data.metrics)
    assert "reports/quality_table.json" in {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert set(json.loads(champion.tags["gate.AP50-95.onnxruntime"])) == {"circle", "square", "triangle"}


def test_champion_alias_moves_only_on_improvement(tmp_path: Path, model_path: Path) -> None:
    from detector.config import MlflowConfig
    from detector.training.tracking import register_champion

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t", registered_model="m")
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment("t")
    run_ids = []
    for _ in range(3):
        with mlflow.start_run() as run:
            run_ids.append(run.info.run_id)
    first = register_champion(cfg, run_ids[0], model_path, 0.50, "{}")
    worse = register_champion(cfg, run_ids[1], model_path, 0.40, "{}")
    better = register_champion(cfg, run_ids[2], model_path, 0.60, "{}")
    assert (first["promoted"], worse["promoted"], better["promoted"]) == (True, False, True)
    assert worse["previous_value"] == 0.50
    holder = mlflow.MlflowClient().get_model_version_by_alias("m", "champion")
    assert str(holder.version) == better["version"] == "3"  # MLflow returns versions as int or str by store


def test_cli_predict_prints_one_result_per_image_in_order(quick_pipeline: Path, sample_photos: list[Path]) -> None:
    val = sorted((quick_pipeline / "data/v1/images/val").glob("*.jpg"))[:2]
    images = [val[0], sample_photos[0], val[1]]
    proc = run_cli(
        [
            "predict",
            *map(str, images),
            "--model",
            str(quick_pipeline / "models/model.onnx"),
            "--backend",
            "onnxruntime",
            "--conf",
            "0.1",
        ],
        cwd=quick_pipeline,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["file"] for r in results] == [str(p) for p in images]
    assert results[1]["image"] == {"width": 810, "height": 1080}
    first = results[0]
    assert set(first) == {"file", "detections", "image", "model", "timings_ms"}
    assert first["model"]["backend"] == "onnxruntime" and first["detections"]
    det = first["detections"][0]
    assert det["class_name"] in {"circle", "square", "triangle"} and 0 < det["confidence"] <= 1
    assert 0 <= det["box"]["x1"] < det["box"]["x2"] <= 128


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "train.epochz=1"], "train.epochz: unknown key"),
        (["data", "validate", "--path", "no/such/dataset"], "no/such/dataset"),
        (["predict", "missing.jpg", "--model", "models/model.onnx"], "missing.jpg"),
        (["predict", "data/v1/images/val", "--model", "no_model.onnx"], "model file not found"),
        (["evaluate", "export.onnx_path=none.onnx"], "run the export stage first"),
    ],
)
def test_cli_errors_are_one_clear_line(quick_pipeline: Path, args: list[str], message: str) -> None:
    proc = run_cli(args, cwd=quick_pipeline)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_training_refuses_a_broken_dataset(tmp_path: Path, dataset_dir: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset_dir, broken)
    label = sorted((broken / "labels/train").glob("*.txt"))[0]
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    proc = run_cli(["train", f"data.source={broken}", "train.mlflow.enabled=false"], cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{label.name}:1" in proc.stderr and "out of range" in proc.stderr
    assert not (tmp_path / "models/best.pt").exists()


def test_export_of_other_weights_does_not_claim_the_train_run(tmp_path: Path, quick_pipeline: Path) -> None:
    """`detector export onnx --weights other.pt` beside a reports/train.json that describes best.pt."""
    import shutil

    import torch

    (tmp_path / "reports").mkdir()
    shutil.copy(quick_pipeline / "reports/train.json", tmp_path / "reports/train.json")
    ckpt = torch.load(quick_pipeline / "models/best.pt", map_location="cpu", weights_only=False)
    ckpt["date"] = "2000-01-01T00:00:00"  # the same network saved again: other bytes, another checkpoint
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    out = tmp_path / "other.onnx"
    proc = run_cli(["export", "onnx", "--weights", str(other), "--out", str(out), "train.imgsz=128"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    meta = read_onnx_metadata(out)
    sha = sha256_file(other)
    train = _json(quick_pipeline / "reports/train.json")
    assert sha != train["weights_sha256"]
    assert meta.weights_sha256 == sha and meta.version == f"yolov8n-{sha[:8]}"
    assert meta.source_run_id == "" and meta.dataset_version == ""
    assert "without a run id" in proc.stderr


def test_reevaluating_an_unchanged_model_keeps_one_registry_version(
    tmp_path: Path, quick_pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`detector evaluate` twice on the same ONNX: one registered version; the configured metric is compared."""
    import onnx

    from cli.stages import stage_evaluate
    from detector.config import load_config
    from detector.runtime.metadata import METADATA_KEY, ModelMetadata

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("reeval")
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    # The trained model, stamped with this store's run (the cached pipeline's store stays untouched).
    proto = onnx.load(str(quick_pipeline / "models/model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    meta = ModelMetadata.from_json(props[METADATA_KEY])
    props[METADATA_KEY] = ModelMetadata(**{**meta.__dict__, "source_run_id": run_id}).to_json()
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(tmp_path / "model.onnx"))

    monkeypatch.chdir(tmp_path)  # reports/metrics.json goes here; no models/best.pt, so no Ultralytics val
    config = load_config(
        [
            f"data.root={quick_pipeline / 'data'}",
            f"export.onnx_path={tmp_path / 'model.onnx'}",
            f"train.mlflow.tracking_uri={uri}",
            "train.mlflow.experiment=reeval",
            "train.mlflow.champion_metric=val_mAP50",
        ],
        config_dir=Path(__file__).resolve().parents[2] / "configs",
        environ={},
    )
    first = stage_evaluate(config)
    second = stage_evaluate(config)
    assert (first["registry"]["reused"], second["registry"]["reused"]) == (False, True)
    assert first["registry"]["version"] == second["registry"]["version"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert len(client.search_model_versions("name = 'yolo-detector'")) == 1
    assert first["registry"]["metric"] == "val_mAP50" and first["registry"]["value"] == first["val"]["mAP50"]
