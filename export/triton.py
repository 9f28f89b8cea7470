"""NVIDIA Triton Inference Server model repository from this project's ONNX (and optionally a TensorRT engine).

`detector export triton --model models/model.onnx --out triton_repo` writes:

    triton_repo/<name>/config.pbtxt        platform "onnxruntime_onnx", dynamic batching, instance group
    triton_repo/<name>/1/model.onnx        the ONNX, copied unchanged
    triton_repo/<name>_trt/config.pbtxt    only with --plan: platform "tensorrt_plan"
    triton_repo/<name>_trt/1/model.plan    the engine, copied unchanged

Why the config spells out every dimension: the project's ONNX has a dynamic batch AND dynamic height/width
(`images: [batch, 3, height, width]`). Triton batches along the first dimension itself (`max_batch_size`), so the
config lists the other dims; height and width are fixed at the model's trained size from the ONNX metadata (`imgsz`),
which is what this project's pre-processing letterboxes to. Output dims the ONNX leaves dynamic (the anchor count of a
raw head) are written as -1, which Triton accepts for outputs. Class names and the full model metadata go into
`parameters`, so a client can read them from Triton's model-config endpoint; pre- and post-processing stay on the
client (`detector.runtime.preprocess.preprocess_batch` and `detector.runtime.postprocess.postprocess`), exactly as
in this project's own service.

What is verified: the generated config.pbtxt parses with Triton's own `ModelConfig` protobuf schema (shipped in the
`tritonclient` package; tests/unit/export/test_triton_repository.py), and the copied model's input/output names,
types and ranks match it.
What is not verified here: a live `tritonserver` loading the repository (no Triton server with the ONNX Runtime or
TensorRT backend can be installed from PyPI; run `docker run --gpus all -p8000:8000 -v $PWD/triton_repo:/models
nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models` to do so). The TensorRT plan
must have been built by the same TensorRT version as the server's, with a batch profile covering `--max-batch`.
A plan built with `input_dtype: uint8` (its sidecar says so) gets a TYPE_UINT8 input: clients send the letterboxed
0-255 pixels (`preprocess_batch(..., dtype=np.uint8)`), the engine normalises them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from detector.errors import InvalidInputError, ModelLoadError
from detector.runtime.engines import read_sidecar, sidecar_path
from detector.runtime.metadata import ModelMetadata, read_onnx_metadata

InstanceKind = Literal["KIND_GPU", "KIND_CPU"]
# ONNX TensorProto element types -> Triton data types (the ones a YOLO export can have).
_TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64"}


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str
    dims: tuple[int, ...]  # without the batch dimension; -1 where the model leaves a dimension dynamic


@dataclass(frozen=True)
class ModelIO:
    input: Tensor
    output: Tensor
    metadata: ModelMetadata


def read_model_io(onnx_path: Path) -> ModelIO:
    """The ONNX's single input and output as Triton sees them, with H/W taken from the metadata's `imgsz`."""
    import onnx

    metadata = read_onnx_metadata(onnx_path)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelLoadError(
            f"{onnx_path}: expected one input and one output, got {len(inputs)} and {len(graph.output)}"
        )
    tensors = []
    for value in (inputs[0], graph.output[0]):
        ttype = value.type.tensor_type
        if ttype.elem_type not in _TRITON_TYPES:
            raise ModelLoadError(f"{onnx_path}: tensor {value.name!r} has unsupported ONNX type {ttype.elem_type}")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim)
        tensors.append(Tensor(value.name, _TRITON_TYPES[ttype.elem_type], dims[1:]))  # dims[0] is the batch
    inp, out = tensors
    if len(inp.dims) != 3 or inp.dims[0] not in (3, -1):
        raise ModelLoadError(f"{onnx_path}: input {inp.name!r} must be (batch, 3, H, W), got (batch, {inp.dims})")
    h, w = metadata.imgsz
    for have, want in zip(inp.dims[1:], (h, w), strict=True):
        if have not in (-1, want):
            raise ModelLoadError(f"{onnx_path}: input H/W {inp.dims[1:]} disagree with metadata imgsz {(h, w)}")
    return ModelIO(Tensor(inp.name, inp.data_type, (3, h, w)), out, metadata)


def plan_io(io: ModelIO, plan: Path) -> ModelIO:
    """The ONNX's IO as the TensorRT plan built from it takes it: a uint8 input when its sidecar says
    `input_dtype: uint8` (a plan without a sidecar is taken to have the ONNX's input type)."""
    if not sidecar_path(plan).is_file() or read_sidecar(plan).input_dtype != "uint8":
        return io
    return dataclasses.replace(io, input=dataclasses.replace(io.input, data_type="TYPE_UINT8"))


def _quote(text: str) -> str:
    """A protobuf text-format string literal (only backslash, quote and newlines need escaping; UTF-8 passes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor(t: Tensor) -> str:
    dims = ", ".join(map(str, t.dims))
    return f"  {{\n    name: {_quote(t.name)}\n    data_type: {t.data_type}\n    dims: [ {dims} ]\n  }}"


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Half and full `max_batch`: the batches Triton's scheduler should wait for (1 when that is all there is)."""
    return sorted({max(1, max_batch // 2), max_batch})


def config_pbtxt(
    name: str,
    platform: Literal["onnxruntime_onnx", "tensorrt_plan"],
    io: ModelIO,
    max_batch: int,
    instances: int,
    kind: InstanceKind,
    max_queue_delay_us: int,
) -> str:
    """The text of `config.pbtxt` for one model (Triton's ModelConfig protobuf in text format)."""
    names = {str(k): v for k, v in io.metadata.names.items()}
    parameters = {"names": json.dumps(names, ensure_ascii=False), "metadata": io.metadata.to_json()}
    params = "\n".join(
        f"parameters {{\n  key: {_quote(k)}\n  value {{ string_value: {_quote(v)} }}\n}}" for k, v in parameters.items()
    )
    preferred = ", ".join(map(str, preferred_batch_sizes(max_batch)))
    return (
        f"name: {_quote(name)}\n"
        f"platform: {_quote(platform)}\n"
        f"max_batch_size: {max_batch}\n"
        f"input [\n{_tensor(io.input)}\n]\n"
        f"output [\n{_tensor(io.output)}\n]\n"
        # Triton forms batches from concurrent requests, like the project's own micro-batcher (inference.server).
        f"dynamic_batching {{\n  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
        f"instance_group [\n  {{\n    kind: {kind}\n    count: {instances}\n  }}\n]\n"
        f"{params}\n"
    )


def write_repository(
    onnx_path: Path,
    out_dir: Path,
    name: str = "detector",
    max_batch: int = 8,
    instances: int = 1,
    kind: InstanceKind = "KIND_GPU",
    plan: Path | None = None,
    max_queue_delay_us: int = 2000,
) -> list[Path]:
    """Write (or overwrite) the model folders under `out_dir`; returns the config files written."""
    if max_batch < 1 or instances < 1 or max_queue_delay_us < 0:
        raise InvalidInputError("--max-batch and --instances must be >= 1, the queue delay >= 0")
    if plan is not None and not plan.is_file():
        raise ModelLoadError(f"TensorRT plan not found: {plan}")
    io = read_model_io(onnx_path)
    models: list[tuple[str, Literal["onnxruntime_onnx", "tensorrt_plan"], Path, str, InstanceKind, ModelIO]] = [
        (name, "onnxruntime_onnx", onnx_path, "model.onnx", kind, io)
    ]
    if plan is not None:  # an engine only runs on a GPU
        models.append((f"{name}_trt", "tensorrt_plan", plan, "model.plan", "KIND_GPU", plan_io(io, plan)))
    written = []
    for model_name, platform, source, filename, model_kind, model_io in models:
        folder = out_dir / model_name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / "1" / filename)
        config = folder / "config.pbtxt"
        text = config_pbtxt(model_name, platform, model_io, max_batch, instances, model_kind, max_queue_delay_us)
        config.write_text(text, encoding="utf-8")
        written.append(config)
    return written
