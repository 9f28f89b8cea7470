"""The "speed on the GPU" items of issue 14, on the CPU stand-in, the part that needs no trained model: the stand-in
refuses a uint8 input that is not cast straight to float (TensorRT's rule), so it would catch a wrong uint8-input
rewrite. The transfers themselves, on the quick model, are in
tests/integration/detector/runtime/tensorrt/test_gpu_speed_standin.py.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import onnx
import pytest
from onnx import TensorProto, helper

from detector.errors import ModelLoadError
from detector.runtime.engines import EngineSpec
from export.tensorrt import build_engine

# --- uint8 upload, normalised on the GPU ----------------------------------------------------------------------------


def test_standin_parser_takes_uint8_only_as_an_input_cast_to_float(standin: ModuleType, tmp_path: Path) -> None:
    """TensorRT's rule (onnx-tensorrt ModelImporter): UINT8 may only be a network input/output, cast to FLOAT/HALF
    before any other layer. The stand-in refuses anything else, so it would catch a wrong rewrite."""
    image = helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 8, 8])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    bad = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["as_int"], to=TensorProto.INT32),
            helper.make_node("Cast", ["as_int"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "two"], ["out"]),
        ],
        "bad",
        [image],
        [out],
        [two],
    )
    model = helper.make_model(bad, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"names": "{0: 'thing'}", "imgsz": "[8, 8]", "stride": "8"}.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="UINT8 input images must be cast to FLOAT/HALF"):
        build_engine(path, EngineSpec(precision="fp32", engine_dir=str(tmp_path / "engines")))
