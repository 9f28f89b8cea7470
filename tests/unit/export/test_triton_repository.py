"""`detector export triton`: the model repository layout, and config.pbtxt checked against Triton's own ModelConfig
protobuf schema (from the `tritonclient` package) when it is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from detector.errors import ModelLoadError
from detector.runtime.metadata import METADATA_KEY, ModelMetadata
from export.triton import preferred_batch_sizes, read_model_io, write_repository

NAMES = {0: "circle", 1: "square", 2: 'tri"angle'}  # a quote: the text-format escaping must hold


def make_onnx(
    path: Path, out_shape: list[Any], head: str = "raw", in_hw: tuple[Any, Any] = ("height", "width")
) -> Path:
    """A tiny ONNX with the exported YOLO signature (its single node is irrelevant: nothing here runs it)."""
    meta = ModelMetadata(names=NAMES, imgsz=(128, 96), head=head, version="test-v1")  # type: ignore[arg-type]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *in_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph)
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return path


def model_config_pb2() -> ModuleType:
    """Triton's ModelConfig schema. Loaded from its file: `tritonclient.grpc/__init__` needs grpcio, the schema not."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed (dev extra): cannot check against Triton's ModelConfig schema")
    file = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", file)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse(path: Path) -> Any:
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    return text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())


def test_raw_head_repository_layout_and_io(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "m.onnx", ["batch", 7, "anchors"])
    (config,) = write_repository(onnx_path, tmp_path / "repo", max_batch=8, instances=2, kind="KIND_CPU")
    assert config == tmp_path / "repo/detector/config.pbtxt"
    assert (tmp_path / "repo/detector/1/model.onnx").read_bytes() == onnx_path.read_bytes()
    io = read_model_io(onnx_path)
    assert io.input.dims == (3, 128, 96)  # H/W from the metadata, the ONNX leaves them dynamic
    assert io.output.dims == (7, -1)


def test_config_parses_with_tritons_schema(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "m.onnx", ["batch", 7, "anchors"])
    (path,) = write_repository(onnx_path, tmp_path / "repo", max_batch=8, instances=2, kind="KIND_CPU")
    cfg = parse(path)
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("detector", "onnxruntime_onnx", 8)
    pb2 = model_config_pb2()
    (inp,) = cfg.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("images", pb2.TYPE_FP32, [3, 128, 96])
    (out,) = cfg.output
    assert (out.name, out.data_type, list(out.dims)) == ("output0", pb2.TYPE_FP32, [7, -1])
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = cfg.instance_group
    assert (group.kind, group.count) == (pb2.ModelInstanceGroup.KIND_CPU, 2)
    names = json.loads(cfg.parameters["names"].string_value)
    assert names == {str(k): v for k, v in NAMES.items()}
    assert ModelMetadata.from_json(cfg.parameters["metadata"].string_value).version == "test-v1"


def test_end2end_head_and_tensorrt_plan(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "m.onnx", ["batch", 300, 6], head="end2end", in_hw=(128, 96))
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not really an engine")
    onnx_cfg, trt_cfg = write_repository(onnx_path, tmp_path / "repo", name="yolo", max_batch=1, plan=plan)
    assert trt_cfg == tmp_path / "repo/yolo_trt/config.pbtxt"
    assert (tmp_path / "repo/yolo_trt/1/model.plan").read_bytes() == plan.read_bytes()
    for path, platform in ((onnx_cfg, "onnxruntime_onnx"), (trt_cfg, "tensorrt_plan")):
        cfg = parse(path)
        assert cfg.platform == platform
        assert list(cfg.output[0].dims) == [300, 6]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [1]
        assert cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_GPU


def test_uint8_plan_gets_a_uint8_input(tmp_path: Path) -> None:
    """A plan built with `input_dtype: uint8` takes 0-255 pixels: its config says TYPE_UINT8, the ONNX's stays FP32."""
    from detector.runtime.engines import BatchProfile, EngineInfo, EngineTarget, sidecar_path

    onnx_path = make_onnx(tmp_path / "m.onnx", ["batch", 300, 6], head="end2end", in_hw=(128, 96))
    plan = tmp_path / "engines" / "x.engine"
    plan.parent.mkdir()
    plan.write_bytes(b"not really an engine")
    info = EngineInfo(
        str(plan), "x", "fp16", EngineTarget("10.16.1.11", "NVIDIA L4", "8.9", "12"), BatchProfile(1, 1, 1), "a", "b",
        NAMES, (128, 96), "{}", "now", input_dtype="uint8",
    )  # fmt: skip
    sidecar_path(plan).write_text(info.to_json())
    onnx_cfg, trt_cfg = write_repository(onnx_path, tmp_path / "repo", max_batch=1, plan=plan)
    assert "data_type: TYPE_FP32" in onnx_cfg.read_text().split("output [")[0]
    assert "data_type: TYPE_UINT8" in trt_cfg.read_text().split("output [")[0]
    assert parse(trt_cfg).input[0].data_type == model_config_pb2().TYPE_UINT8


def test_static_hw_that_disagrees_with_metadata_is_refused(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "m.onnx", ["batch", 7, 252], in_hw=(640, 640))
    with pytest.raises(ModelLoadError, match="disagree with metadata imgsz"):
        write_repository(onnx_path, tmp_path / "repo")


def test_missing_plan_is_a_clear_error(tmp_path: Path) -> None:
    onnx_path = make_onnx(tmp_path / "m.onnx", ["batch", 7, "anchors"])
    with pytest.raises(ModelLoadError, match="TensorRT plan not found"):
        write_repository(onnx_path, tmp_path / "repo", plan=tmp_path / "nope.plan")


def test_preferred_batch_sizes() -> None:
    assert preferred_batch_sizes(1) == [1]
    assert preferred_batch_sizes(8) == [4, 8]
    assert preferred_batch_sizes(3) == [1, 3]
