"""The model registry on a real MLflow SQLite store: an unchanged model evaluated again keeps its version; a new
file or another run gets a new one; the configured champion metric decides the alias."""

from __future__ import annotations

from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
onnx = pytest.importorskip("onnx")

from detector.config import MlflowConfig  # noqa: E402
from detector.runtime.metadata import METADATA_KEY, ModelMetadata  # noqa: E402
from detector.training.tracking import CLASS_CONF_TAG, ONNX_SHA_TAG, register_champion  # noqa: E402


def tiny_onnx(path: Path, doc: str) -> Path:
    """A valid one-node ONNX model; `doc` changes its bytes (a re-export with other settings)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string=doc)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


def new_run(cfg: MlflowConfig) -> str:
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment)
    with mlflow.start_run() as run:
        return str(run.info.run_id)


def versions(cfg: MlflowConfig) -> list[str]:
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{cfg.registered_model}'"))


def test_evaluating_the_same_model_again_reuses_its_version(store: Path) -> None:
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{store / 'mlflow.db'}", experiment="reuse", registered_model="reuse")
    run_id = new_run(cfg)
    model = tiny_onnx(store / "a.onnx", "export 1")
    first = register_champion(cfg, run_id, model, 0.5, "{}")
    again = register_champion(cfg, run_id, model, 0.5, "{}")
    assert (first["reused"], again["reused"]) == (False, True)
    assert again["version"] == first["version"] and versions(cfg) == [first["version"]]
    assert again["promoted"] is False and again["previous_champion"] is not None  # it already holds the alias
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri)
    assert len(client.search_model_versions(f"name = '{cfg.registered_model}' and run_id = '{run_id}'")) == 1
    tags = client.get_model_version(cfg.registered_model, first["version"]).tags
    assert len(tags[ONNX_SHA_TAG]) == 64

    # The same run with a re-exported (different) file, and another run with the same file: new versions.
    reexported = register_champion(cfg, run_id, tiny_onnx(store / "b.onnx", "export 2"), 0.5, "{}")
    other_run = register_champion(cfg, new_run(cfg), model, 0.5, "{}")
    assert not reexported["reused"] and not other_run["reused"]
    assert len(versions(cfg)) == 3


def test_the_configured_metric_is_the_tag_the_alias_is_compared_on(store: Path) -> None:
    cfg = MlflowConfig(
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        experiment="metric",
        registered_model="metric",
        champion_metric="val_recall",
    )
    first = register_champion(cfg, new_run(cfg), tiny_onnx(store / "c.onnx", "c"), 0.7, "{}")
    second = register_champion(cfg, new_run(cfg), tiny_onnx(store / "d.onnx", "d"), 0.9, "{}")
    assert first["metric"] == second["metric"] == "val_recall"
    assert second["previous_value"] == 0.7 and second["promoted"] is True
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri)
    holder = client.get_model_version_by_alias("metric", "champion")
    assert str(holder.version) == second["version"] and holder.tags["val_recall"] == "0.9"


def test_the_version_is_tagged_with_the_models_per_class_thresholds(store: Path) -> None:
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{store / 'mlflow.db'}", experiment="thr", registered_model="thr")
    path = tiny_onnx(store / "t.onnx", "thresholds")
    model = onnx.load(str(path))
    meta = ModelMetadata({0: "circle", 1: "square"}, (64, 64), class_conf={1: 0.42}, class_conf_rule="max F1")
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())
    onnx.save(model, str(path))
    version = register_champion(cfg, new_run(cfg), path, 0.5, "{}")["version"]
    tags = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri).get_model_version("thr", version).tags
    assert tags[CLASS_CONF_TAG] == '{"square": 0.42}' and tags[f"{CLASS_CONF_TAG}_rule"] == "max F1"
