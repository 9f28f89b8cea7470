"""FLOP counting on tiny hand-built ONNX graphs whose MACs are known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.flops import count_flops


def _save(tmp_path: Path, nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray]) -> Path:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_conv_macs(tmp_path: Path) -> None:
    # 3->8 channels, 3x3 kernel, stride 2, pad 1: 32x32 -> 16x16.
    w = np.zeros((8, 3, 3, 3), np.float32)
    conv = helper.make_node("Conv", ["images", "w"], ["out"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    path = _save(tmp_path, [conv], {"w": w})
    macs = 2 * 8 * 16 * 16 * 3 * 3 * 3  # batch x Cout x H x W x Cin x kh x kw
    result = count_flops(path, batch=2, height=32, width=32)
    assert result["flops"] == 2 * macs
    assert result["per_op"] == {"Conv": 2 * macs}
    assert result["uncounted"] == []


def test_grouped_conv_then_matmul(tmp_path: Path) -> None:
    # Depthwise conv (groups=3, 1x1) keeps (1, 3, 4, 5); MatMul with (5, 7) -> (1, 3, 4, 7).
    w = np.zeros((3, 1, 1, 1), np.float32)
    m = np.zeros((5, 7), np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["c"], kernel_shape=[1, 1], group=3),
        helper.make_node("MatMul", ["c", "m"], ["out"]),
    ]
    path = _save(tmp_path, nodes, {"w": w, "m": m})
    conv_macs = 1 * 3 * 4 * 5 * 1  # each output element: Cin/groups (1) x 1 x 1
    matmul_macs = 1 * 3 * 4 * 7 * 5  # each output element: a 5-long dot product
    result = count_flops(path, batch=1, height=4, width=5)
    assert result["per_op"] == {"Conv": 2 * conv_macs, "MatMul": 2 * matmul_macs}


def test_gemm_and_conv_transpose(tmp_path: Path) -> None:
    # ConvTranspose 3->2 channels, 2x2 kernel, stride 2: (1,3,4,4) -> (1,2,8,8); then Flatten + Gemm to 10 outputs.
    wt = np.zeros((3, 2, 2, 2), np.float32)
    wg = np.zeros((10, 128), np.float32)  # transB=1: (N, K)
    nodes = [
        helper.make_node("ConvTranspose", ["images", "wt"], ["t"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["t"], ["f"]),
        helper.make_node("Gemm", ["f", "wg"], ["out"], transB=1),
    ]
    path = _save(tmp_path, nodes, {"wt": wt, "wg": wg})
    convt_macs = 3 * 4 * 4 * 2 * 2 * 2  # every input element x (Cout/groups x kh x kw)
    gemm_macs = 1 * 10 * 128
    result = count_flops(path, batch=1, height=4, width=4)
    assert result["per_op"] == {"ConvTranspose": 2 * convt_macs, "Gemm": 2 * gemm_macs}


def test_flops_scale_with_batch_and_area(tmp_path: Path) -> None:
    w = np.zeros((4, 3, 1, 1), np.float32)
    path = _save(tmp_path, [helper.make_node("Conv", ["images", "w"], ["out"], kernel_shape=[1, 1])], {"w": w})
    one = count_flops(path, 1, 8, 8)["flops"]
    assert count_flops(path, 4, 8, 8)["flops"] == 4 * one
    assert count_flops(path, 1, 16, 16)["flops"] == 4 * one


def test_input_file_is_not_modified(tmp_path: Path) -> None:
    w = np.zeros((4, 3, 1, 1), np.float32)
    path = _save(tmp_path, [helper.make_node("Conv", ["images", "w"], ["out"], kernel_shape=[1, 1])], {"w": w})
    before = path.read_bytes()
    count_flops(path, 2, 8, 8)
    assert path.read_bytes() == before


@pytest.mark.parametrize("size", [64, 128])
def test_unresolvable_shapes_are_reported(tmp_path: Path, size: int) -> None:
    # A MatMul against a graph-level dynamic second input cannot be resolved: it is listed, not silently 0.
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "other"], ["out"])],
        "dyn",
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
            helper.make_tensor_value_info("other", TensorProto.FLOAT, ["k", "n"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = count_flops(path, 1, size, size)
    assert result["flops"] == 0
    assert len(result["uncounted"]) == 1
