"""FP32 -> FP16 ONNX, so TensorRT's strongly typed networks build FP16 engines.

TensorRT 11 removed `BuilderFlag.FP16`: a strongly typed network runs in the precision its ONNX declares. The graph's
float tensors become float16 while the model's inputs and outputs stay float32 (`keep_io_types`: one Cast after each
input, one before each output), so every backend feeds and reads the FP16 model exactly like the FP32 one. Inputs the
ONNX spec pins to float32 (Resize `scales`) stay float32.

Why ONNX Runtime's converter (`onnxruntime.transformers.float16`, the maintained successor of onnxconverter-common's)
and not our own: measured on the quick test model (8 validation images, 128 px) it gives exactly what the former
hand-written converter gave: the same outputs (largest difference to FP32: 0.40 px on boxes, 7.3e-4 on scores), the
same 8 Casts and 129 of 149 initializers in FP16; so nothing of ours was needed. One gap, handled here: its output is
not topologically sorted (the ONNX checker rejects it, and TensorRT's ONNX parser reads nodes in order), so the same
package's `OnnxModel.topological_sort` orders it and the checker validates the result. onnxruntime is already a core
dependency. Changing this conversion changes FP16 engines: bump `detector.runtime.engines.BUILDER_RECIPE`.
"""

from __future__ import annotations

from typing import Any


def convert_to_fp16(model: Any) -> Any:
    """Return a float16 copy of `model` (an `onnx.ModelProto`) with float32 graph inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    copy = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's model
    half = OnnxModel(convert_float_to_float16(copy, keep_io_types=True))
    half.topological_sort()
    onnx.checker.check_model(half.model)
    return half.model
