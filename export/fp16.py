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

INT8 Q/DQ graphs (`convert_qdq_to_fp16`): TensorRT builds them strongly typed, where the graph's own types set the
precision of every layer that is not quantized, so an FP32 Q/DQ ONNX runs its non-INT8 parts (bias, SiLU, Concat,
Resize, the head's DFL/Sigmoid) in FP32. Ultralytics' TensorRT INT8 path converts the float parts to FP16 (ModelOpt)
for this reason; this does the same with the same converter: every float tensor becomes FP16, INCLUDING the Q/DQ
scales, so a DequantizeLinear outputs FP16 straight into its Conv (a Cast between them would keep TensorRT from
fusing the Q/DQ pair into an INT8 convolution), and QuantizeLinear takes FP16. FP16 scales are ONNX from opset 19
on, so the graph is first converted to opset 19 (`onnx.version_converter`); TensorRT 10 and 11 parse opset 19
Q/DQ with FP16 scales. The result is only what TensorRT is given: the shipped INT8 ONNX that ONNX Runtime and
OpenVINO run is never changed.
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


QDQ_FP16_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take float16 scales


def convert_qdq_to_fp16(model: Any) -> Any:
    """A copy of the INT8 Q/DQ `model` with every float part, Q/DQ scales included, in float16 (graph inputs and
    outputs stay float32); the Q/DQ nodes, their int8 zero points and int8 weights are kept as they are."""
    import onnx
    from onnx import version_converter

    copy = onnx.ModelProto.FromString(model.SerializeToString())
    opset = next((o.version for o in copy.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QDQ_FP16_OPSET:
        # Keep metadata_props and the like: the version converter returns a new model.
        copy = version_converter.convert_version(copy, QDQ_FP16_OPSET)
    return convert_to_fp16(copy)
