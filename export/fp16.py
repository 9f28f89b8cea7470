"""Minimal FP32 -> FP16 ONNX conversion, so TensorRT's strongly typed networks build FP16 engines.

TensorRT 11 removed `BuilderFlag.FP16`: a strongly typed network runs in the precision its ONNX declares. This
converter makes the graph's float tensors float16 while keeping the model's inputs and outputs float32 (one Cast
after each input, one before each output), so every backend feeds and reads the FP16 model exactly like the FP32 one.

Deliberately small (no `onnxconverter_common` dependency): it covers what YOLO exports contain. Slots whose type
the ONNX spec fixes to float32 (e.g. Resize `scales`) stay float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# (op_type, input index) whose type the ONNX spec pins to tensor(float): converting them would make the graph invalid.
_FP32_ONLY_INPUTS: frozenset[tuple[str, int]] = frozenset({("Resize", 2), ("Upsample", 1)})
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def convert_to_fp16(model: Any) -> Any:
    """Return a float16 copy of `model` (an `onnx.ModelProto`) with float32 graph inputs and outputs."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's model
    graph = model.graph
    keep_fp32 = {
        node.input[i]
        for node in graph.node
        for (op, i) in _FP32_ONLY_INPUTS
        if node.op_type == op and i < len(node.input) and node.input[i]
    }

    for i, init in enumerate(graph.initializer):
        if init.data_type == _FLOAT and init.name not in keep_fp32:
            arr = numpy_helper.to_array(init).astype(np.float16)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))

    for node in graph.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == _FLOAT:
                    attr.i = _FLOAT16
        elif node.op_type in ("Constant", "ConstantOfShape"):
            if node.op_type == "Constant" and node.output[0] in keep_fp32:
                continue
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == _FLOAT:
                    arr = numpy_helper.to_array(attr.t).astype(np.float16)
                    attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))

    # float32 inputs: cast once to float16 and point every consumer at the cast.
    cast_nodes_in = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != _FLOAT:
            continue
        half = f"{inp.name}__fp16"
        for node in graph.node:
            for j, name in enumerate(node.input):
                if name == inp.name:
                    node.input[j] = half
        cast_nodes_in.append(helper.make_node("Cast", [inp.name], [half], to=_FLOAT16, name=f"{inp.name}__to_fp16"))

    # float32 outputs: the producer now writes `<name>__fp16`, a final Cast restores the float32 name.
    cast_nodes_out = []
    for out in graph.output:
        if out.type.tensor_type.elem_type != _FLOAT:
            continue
        half = f"{out.name}__fp16"
        for node in graph.node:
            for j, name in enumerate(node.output):
                if name == out.name:
                    node.output[j] = half
            for j, name in enumerate(node.input):  # an output may also feed other nodes
                if name == out.name:
                    node.input[j] = half
        cast_nodes_out.append(helper.make_node("Cast", [half], [out.name], to=_FLOAT, name=f"{out.name}__to_fp32"))

    nodes = [*cast_nodes_in, *graph.node, *cast_nodes_out]
    del graph.node[:]
    graph.node.extend(nodes)
    # Intermediate type annotations are now wrong; shape inference rebuilds them from the new types.
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model
