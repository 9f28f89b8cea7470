"""Model FLOPs counted from the ONNX graph itself (no torch/thop): Conv, ConvTranspose, MatMul and Gemm MACs x 2.

Shapes come from `onnx.shape_inference` on a copy of the model whose dynamic input dims are pinned to the batch and
image size being benchmarked. Element-wise ops, activations, pooling, resize and the like are ignored: on YOLO
models they are well under 1% of the arithmetic, and GEMM-like ops are what a CPU's peak GFLOP/s is measured on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _static_copy(model: Any, batch: int, height: int, width: int) -> Any:
    """A copy of `model` with the first input's dynamic dims set to (batch, C, height, width)."""
    import onnx

    static = onnx.ModelProto()
    static.CopyFrom(model)
    initializers = {init.name for init in static.graph.initializer}
    inputs = [i for i in static.graph.input if i.name not in initializers]
    if not inputs:
        raise ValueError("model has no graph input")
    dims = inputs[0].type.tensor_type.shape.dim
    wanted = [batch, None, height, width] if len(dims) == 4 else [batch] + [None] * (len(dims) - 1)
    for dim, value in zip(dims, wanted, strict=True):
        if value is not None and not dim.HasField("dim_value"):
            dim.dim_value = value  # setting dim_value clears dim_param (a oneof)
    # Intermediate shapes left over from export may carry the old symbolic dims: infer them afresh.
    del static.graph.value_info[:]
    return static


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor name -> its static shape, where shape inference could determine one."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if all(d > 0 for d in dims) or not dims:
            shapes[info.name] = tuple(dims)
    return shapes


def _attr(node: Any, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def node_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one node; raises KeyError when a needed shape is unknown."""
    op = node.op_type
    if op == "Conv":
        out = shapes[node.output[0]]  # (N, Cout, *spatial)
        weight = shapes[node.input[1]]  # (Cout, Cin/groups, *kernel)
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        inp = shapes[node.input[0]]  # (N, Cin, *spatial_in)
        weight = shapes[node.input[1]]  # (Cin, Cout/groups, *kernel): every input element meets a full filter
        return math.prod(inp) * math.prod(weight[1:])
    if op == "MatMul":
        a = shapes[node.input[0]]
        out = shapes[node.output[0]]
        return math.prod(out) * a[-1]  # each output element is a K-long dot product
    if op == "Gemm":
        a = shapes[node.input[0]]
        out = shapes[node.output[0]]
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return math.prod(out) * k
    return 0


def count_flops(model_path: str | Path, batch: int, height: int, width: int) -> dict[str, Any]:
    """FLOPs (2 x MACs) of one forward pass at `batch` x 3 x `height` x `width`, with a per-op breakdown.

    `uncounted` lists GEMM-like nodes whose shapes inference could not resolve (their MACs are missing from the
    total, so a non-empty list means the figure is a lower bound).
    """
    import onnx

    model = onnx.load(str(model_path))
    shapes = _shapes(_static_copy(model, batch, height, width))
    per_op: dict[str, int] = dict.fromkeys(COUNTED_OPS, 0)
    uncounted: list[str] = []
    # Top-level nodes only: subgraphs (If/Loop bodies) do not occur in exported YOLO models.
    for node in model.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        try:
            per_op[node.op_type] += 2 * node_macs(node, shapes)
        except (KeyError, IndexError):
            uncounted.append(node.name or node.op_type)
    return {
        "flops": sum(per_op.values()),
        "per_op": {k: v for k, v in per_op.items() if v},
        "uncounted": uncounted,
        "input": [batch, 3, height, width],
    }
