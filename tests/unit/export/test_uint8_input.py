"""export/uint8_input.py on CPU with ONNX Runtime, on tiny hand-built models: the rewritten uint8-input ONNX computes
exactly what the float model computes from the same letterboxed image (bit for bit: the Cast and the multiply by
1/255 are the float32 operations `preprocess` does on the CPU), the caller's model is left as it was, and what cannot
be retyped is refused. The same on the trained quick model is in tests/integration/export/test_uint8_input.py."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from detector.errors import ModelLoadError
from detector.runtime.preprocess import PIXEL_SCALE, preprocess_batch
from export.uint8_input import uint8_input_model


def _session(model: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _tiny(elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A 3x3 conv on a float (or float16) image: small, quick, no trained model needed."""
    np_type = np.float32 if elem_type == TensorProto.FLOAT else np.float16
    weights = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np_type)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["out"], pads=[1, 1, 1, 1])],
        "tiny",
        [helper.make_tensor_value_info("images", elem_type, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("out", elem_type, ["batch", 4, 16, 16])],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _pixels(rng: np.random.Generator, n: int = 2, shape: tuple[int, int] = (12, 16)) -> list[np.ndarray]:
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("elem_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_tiny_model_uint8_input_is_bit_exact(elem_type: int) -> None:
    model = _tiny(elem_type)
    original = model.SerializeToString()
    rewritten = uint8_input_model(model)
    assert model.SerializeToString() == original, "the caller's model must not change"
    assert rewritten.graph.input[0].name == "images"
    assert rewritten.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [n.op_type for n in rewritten.graph.node[:2]] == ["Cast", "Mul"]

    images = _pixels(np.random.default_rng(1))  # 12x16: letterboxed to 16x16 with padding rows
    dtype = np.float32 if elem_type == TensorProto.FLOAT else np.float16
    floats, infos = preprocess_batch(images, (16, 16), dtype)
    raw, raw_infos = preprocess_batch(images, (16, 16), np.uint8)
    assert raw.dtype == np.uint8 and infos == raw_infos
    np.testing.assert_array_equal((raw * PIXEL_SCALE).astype(dtype), floats)  # same pixels, one scaled on the CPU
    # What the graph feeds its first layer is exactly what the CPU pre-processing makes.
    probe = uint8_input_model(model)
    probe.graph.output.append(helper.make_tensor_value_info("images_scaled", elem_type, None))
    ours, normalised = _session(probe.SerializeToString()).run(None, {"images": raw})
    np.testing.assert_array_equal(normalised, floats)
    expected = _session(original).run(None, {"images": floats})[0]
    if elem_type == TensorProto.FLOAT:
        np.testing.assert_array_equal(ours, expected)
    else:
        # ONNX Runtime runs a float16 Conv on CPU in float32 and drops the Cast pair around it, which here skips
        # the input's float16 rounding (the probe output above keeps it, hence exact there): float16 tolerance.
        np.testing.assert_allclose(ours, expected, atol=1e-2, rtol=1e-2)


def test_rewrite_refuses_what_it_cannot_retype() -> None:
    model = _tiny()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(ModelLoadError, match="not a float image"):
        uint8_input_model(model)
    already = uint8_input_model(_tiny())
    assert uint8_input_model(already).SerializeToString() == already.SerializeToString()  # idempotent
