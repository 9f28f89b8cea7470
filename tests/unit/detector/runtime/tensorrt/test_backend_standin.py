"""The TensorRT engine cache's keys and precisions, and the runtime's import hygiene: the model-free part of the
TensorRT backend tests. The backend and cache run against the CPU stand-in on the trained quick model in
tests/integration/detector/runtime/tensorrt/test_backend_standin.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.runtime.engines import BatchProfile, EngineTarget, engine_key

# --- engine cache ------------------------------------------------------------------------------------------------


def test_engine_key_depends_on_everything_an_engine_depends_on() -> None:
    target = EngineTarget("10.16.1.11", "NVIDIA L4", "8.9", "12")
    base = engine_key("abc", target, "fp16", BatchProfile(1, 4, 8))
    variants = [
        engine_key("abc", EngineTarget("10.16.1.11", "NVIDIA L4", "8.9", "13"), "fp16", BatchProfile(1, 4, 8)),
        engine_key("abc", target, "fp16", BatchProfile(1, 4, 8), recipe=999),
        engine_key("abd", target, "fp16", BatchProfile(1, 4, 8)),
        engine_key("abc", target, "fp32", BatchProfile(1, 4, 8)),
        engine_key("abc", EngineTarget("11.4.0.106", "NVIDIA L4", "8.9"), "fp16", BatchProfile(1, 4, 8)),
        engine_key("abc", EngineTarget("10.16.1.11", "NVIDIA A100", "8.0"), "fp16", BatchProfile(1, 4, 8)),
        engine_key("abc", target, "fp16", BatchProfile(1, 4, 16)),
        engine_key("abc", target, "fp16", BatchProfile(1, 4, 8), input_dtype="uint8"),
    ]
    assert len({base, *variants}) == 9
    assert engine_key("abc", target, "fp16", BatchProfile(1, 4, 8)) == base


def test_engine_precision_is_what_the_graph_computes_in() -> None:
    """int8 for a Q/DQ graph and fp16 for an FP16 graph, whatever was asked; the sidecar accepts only real ones."""
    from onnx import TensorProto, helper, numpy_helper

    from detector.runtime.engines import EngineInfo, engine_precision

    def graph(op: str, weight_type: type) -> object:
        w = numpy_helper.from_array(np.ones((1,), weight_type), "w")
        node = helper.make_node(op, ["x", "w"], ["y"])
        x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
        return helper.make_model(helper.make_graph([node], "g", [x], [y], [w]))

    assert engine_precision(graph("Add", np.float32), "fp16") == "fp16"
    assert engine_precision(graph("Add", np.float32), "fp32") == "fp32"
    assert engine_precision(graph("Add", np.float16), "fp32") == "fp16"
    assert engine_precision(graph("DequantizeLinear", np.float32), "fp32") == "int8"
    target = EngineTarget("10.16.1.11", "NVIDIA L4", "8.9", "12")
    info = EngineInfo("e", "k", "int8", target, BatchProfile(), "a", "b", {0: "x"}, (64, 64), "{}", "now")
    assert EngineInfo.from_json(info.to_json()) == info
    with pytest.raises(ValueError, match="unknown precision"):
        EngineInfo.from_json(info.to_json().replace('"int8"', '"int4"'))


# --- imports -----------------------------------------------------------------------------------------------------


def test_importing_the_runtime_does_not_import_tensorrt() -> None:
    import subprocess
    import sys

    code = (
        "import sys, detector.runtime, detector.runtime.backends.tensorrt_backend, export.tensorrt, cli.main;"
        "assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[5])
