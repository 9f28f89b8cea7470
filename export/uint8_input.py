"""An ONNX that takes uint8 pixels and normalises them itself, for TensorRT engines built with `input_dtype: uint8`.

The image input becomes uint8 `(B, 3, H, W)` with the same name and shape, followed by a Cast to float32 and a
multiply by `PIXEL_SCALE` (1/255 as float32), exactly the arithmetic `detector.runtime.preprocess` does on the CPU,
so the rest of the graph sees the float32 values it saw before (bit for bit under ONNX Runtime). A float16 input
gets one more Cast to float16 after the multiply, as `preprocess_batch` casts after scaling.

TensorRT accepts this: UINT8 is a network input/output type only, and a UINT8 input must be cast to FLOAT or HALF
before any other layer (onnx-tensorrt `ModelImporter.cpp`, TensorRT's `DataType.UINT8` documentation; the ONNX
parser's Cast importer maps to `ICastLayer`, which supports uint8 -> float32/float16). The host then uploads a
quarter of the bytes, and the normalisation runs on the GPU (TensorRT may fuse it into the first convolution).

Applied at build time to an in-memory copy (`export.tensorrt`); the ONNX file is never changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.errors import ModelLoadError
from detector.runtime.preprocess import PIXEL_SCALE


def with_uint8_input(onnx_bytes: bytes) -> bytes:
    """The serialized ONNX `onnx_bytes`, rewritten to take uint8 pixels (see the module docstring)."""
    import onnx

    return bytes(uint8_input_model(onnx.ModelProto.FromString(onnx_bytes)).SerializeToString())


def uint8_input_model(model: Any) -> Any:
    """A copy of `model` (an `onnx.ModelProto`) whose single image input takes uint8 0-255 pixels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelLoadError(f"a uint8 input needs a model with one image input, this one has {len(inputs)}")
    image = inputs[0]
    elem_type = image.type.tensor_type.elem_type
    if elem_type == TensorProto.UINT8:
        return copy  # already takes uint8
    if elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise ModelLoadError(f"input {image.name} is {TensorProto.DataType.Name(elem_type)}, not a float image")
    if any(o.name == image.name for o in graph.output):
        raise ModelLoadError(f"input {image.name} is also a graph output; cannot retype it")

    taken = {name for node in graph.node for name in (*node.input, *node.output)} | initializers
    taken |= {v.name for v in (*graph.input, *graph.output, *graph.value_info)}

    def fresh(base: str) -> str:
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        return name

    as_float, scale, normalised = fresh(f"{image.name}_float"), fresh("pixel_scale"), fresh(f"{image.name}_scaled")
    for node in graph.node:  # every reader of the image now reads the normalised tensor
        for i, name in enumerate(node.input):
            if name == image.name:
                node.input[i] = normalised
    nodes = [helper.make_node("Cast", [image.name], [as_float], name="uint8_input_cast", to=TensorProto.FLOAT)]
    if elem_type == TensorProto.FLOAT:
        nodes.append(helper.make_node("Mul", [as_float, scale], [normalised], name="uint8_input_scale"))
    else:  # float16 model input: scale in float32 like preprocess_batch, then cast
        scaled = fresh(f"{image.name}_scaled_float")
        nodes.append(helper.make_node("Mul", [as_float, scale], [scaled], name="uint8_input_scale"))
        nodes.append(helper.make_node("Cast", [scaled], [normalised], name="uint8_input_cast_half", to=elem_type))
    for i, node in enumerate(nodes):  # first: the graph stays topologically sorted
        graph.node.insert(i, node)
    graph.initializer.append(numpy_helper.from_array(np.array(PIXEL_SCALE, dtype=np.float32), scale))
    image.type.tensor_type.elem_type = TensorProto.UINT8
    onnx.checker.check_model(copy)
    return copy
