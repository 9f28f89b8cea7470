"""INT8 post-training quantization of an exported ONNX model with NNCF, behind an accuracy gate.

The result is one Q/DQ ONNX file for every backend: ONNX Runtime and OpenVINO run it as is, and its quantizers are
what TensorRT's explicit quantization accepts (symmetric int8, zero points 0, per-output-channel weight scales,
per-tensor activation scales; `tensorrt_qdq_problems` checks exactly that).

Calibration images are a seeded sample of a dataset split, pre-processed by our runtime's own letterbox (the same
rectangular input shape `Detector` would use), so the statistics match what the served model sees. The file is
written only after its val mAP50-95, measured through our runtime, is within `max_map_drop` of the FP32 model's and
no class's AP50-95 is lower than the FP32 model's by more than `max_class_drop` (the promotion gate's rule).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.config import Int8Config, OpenVinoConfig, ProfileConfig, ThresholdsConfig
from detector.data.yolo_format import list_split_images
from detector.errors import (
    AccuracyGateError,
    DatasetError,
    MissingDependencyError,
    ModelLoadError,
    QuantizationRefusedError,
)
from detector.evaluation import MetricsResult, evaluate_split
from detector.evaluation.evaluate import match_split, read_rgb
from detector.evaluation.gate import class_drops
from detector.files import write_atomic
from detector.runtime import BackendOptions, Detector
from detector.runtime.metadata import METADATA_KEY, ModelMetadata, read_onnx_metadata, sha256_file
from detector.runtime.precision import cpu_name, native_bf16
from detector.runtime.preprocess import preprocess_batch

log = logging.getLogger(__name__)

_QUANT_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
)
# Ops of NMS-like end-to-end heads: never quantized (INT8 "with NMS" is a known build failure elsewhere).
_NMS_OPS = ["TopK", "NonMaxSuppression", "GatherElements", "GatherND", "ArgMax", "ReduceMax"]
# The evaluation runs through ONNX Runtime, the backend `detector evaluate` uses (OpenVINO agrees within the
# tolerance the tests state).
_GATE_BACKEND = "onnxruntime"


def calibration_images(dataset_dir: Path, split: str, count: int, seed: int) -> list[Path]:
    """A deterministic sample of `count` images of `split` (all of them when fewer), in file order."""
    images = list_split_images(Path(dataset_dir), split)
    if not images:
        raise DatasetError(f"no calibration images: {Path(dataset_dir) / 'images' / split} has no image files")
    if len(images) <= count:
        return images
    picked = random.Random(seed).sample(range(len(images)), count)
    return [images[i] for i in sorted(picked)]


def load_fp32_onnx(path: Path) -> tuple[Any, ModelMetadata]:
    """The ONNX model and its metadata; ModelLoadError (one line) for a missing, non-ONNX or already-quantized file."""
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # DecodeError, google.protobuf errors, OSError
        raise ModelLoadError(f"{path} is not an ONNX file ({type(exc).__name__})") from exc
    if not model.graph.node:  # protobuf parses many non-ONNX files as an empty model
        raise ModelLoadError(f"{path} is not an ONNX model (no graph nodes)")
    metadata = read_onnx_metadata(path)
    quantized = sorted({n.op_type for n in model.graph.node} & _QUANT_OPS)
    if quantized or metadata.precision == "int8":
        raise ModelLoadError(
            f"{path} is already quantized ({', '.join(quantized) or 'precision int8'}); quantize the FP32 model"
        )
    if metadata.precision != "fp32":
        raise ModelLoadError(f"{path} is a {metadata.precision} model; quantize the FP32 export")
    return model, metadata


def head_ignored_scope(model: Any) -> tuple[list[str], list[str]]:
    """NNCF ignored-scope patterns and types for the detection head's decode, found from Ultralytics' node names.

    The head is the last `/model.N/` module. Its convolutions stay quantized (they are most of its compute); the
    decode after them (DFL softmax + conv, anchor Add/Sub/Mul/Div, the class Sigmoid, the output Concat) stays
    float: quantizing it puts box coordinates in pixels on an int8 grid, which is what collapses mAP.
    """
    indices = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"^/model\.(\d+)/", n.name))]
    types = ["Sigmoid", "Softmax", *_NMS_OPS]
    if not indices:
        return [], types
    head = rf"/model\.{max(indices)}/"
    return [rf"^{head}dfl/.*", rf"^{head}(Add|Sub|Mul|Div|Sigmoid|Softmax|Concat)(_\d+)?$"], types


def signed_activation_quantizers(model: Any) -> int:
    """Turn NNCF's unsigned quantizers (uint8, zero point 0: the [0, 1] image input) into signed int8 ones with
    zero point 0 and twice the scale, in place; return how many. TensorRT only takes int8 Q/DQ with zero point 0,
    and NNCF's `signedness_to_force` conflicts with its own hardware config on ONNX, so this is done afterwards.
    The input then has 127 levels over [0, max] instead of 255 (the mAP effect is inside the gate's measurement)."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    infos = {v.name: v for v in model.graph.value_info}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        zp_init, scale_init = inits.get(node.input[2]), inits.get(node.input[1])
        if zp_init is None or scale_init is None:
            continue
        zp = numpy_helper.to_array(zp_init)
        if zp.dtype != np.uint8 or zp.any():
            continue  # int8 already, or a genuinely asymmetric (mixed preset) quantizer
        scale = numpy_helper.to_array(scale_init).astype(np.float32) * np.float32(255.0 / 127.0)
        zp_init.CopyFrom(numpy_helper.from_array(np.zeros(zp.shape, np.int8), zp_init.name))
        scale_init.CopyFrom(numpy_helper.from_array(scale, scale_init.name))
        if node.output[0] in infos:  # the recorded type of the quantized tensor follows its zero point
            infos[node.output[0]].type.tensor_type.elem_type = TensorProto.INT8
        changed += 1  # the paired DequantizeLinear reads the same two initializers
    return changed


def tensorrt_qdq_problems(model: Any) -> list[str]:
    """What stops TensorRT's explicit quantization from taking this Q/DQ graph as is ([] when nothing)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    problems: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 else None
        scale = inits.get(node.input[1])
        if zp is None or zp.dtype != np.int8 or zp.any():
            problems.append(f"{node.name}: zero point must be an int8 initializer of zeros")
        if scale is None:
            problems.append(f"{node.name}: scale must be an initializer")
            continue
        weight = inits.get(node.input[0])
        if weight is not None:  # a weight: per output channel along axis 0
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim != 1 or axis != 0 or scale.shape[0] != weight.shape[0]:
                problems.append(f"{node.name}: weight scale must be 1-D per output channel (axis 0)")
        elif scale.size != 1:
            problems.append(f"{node.name}: activation scale must be per tensor (a scalar)")
    return problems


@dataclasses.dataclass(frozen=True)
class Restore:
    """A second quantization, after the first model failed the gate: NNCF's accuracy control, measured on the gate's
    images (`images`, files of `split` of `dataset_dir`). `failures` and `quantizers` (its QuantizeLinear nodes) say
    what the first model was, for the report."""

    dataset_dir: Path
    split: str
    images: list[Path]
    failures: list[str]
    quantizers: int


def quantize_model(
    model: Any,
    metadata: ModelMetadata,
    fp32_path: Path,
    images: list[Path],
    options: Int8Config,
    restore: Restore | None = None,
) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training quantization of `model` calibrated on `images`; returns the Q/DQ model and what was done.
    With `restore`, quantization with accuracy control (`Int8Config.max_float_layers`)."""
    try:
        import nncf
    except ImportError as exc:
        raise MissingDependencyError(f"INT8 quantization needs nncf (the `train` extra): {exc}") from exc

    with Detector.load(fp32_path, backend=_GATE_BACKEND) as detector:
        input_name = model.graph.input[0].name

        def transform(path: Path) -> dict[str, npt.NDArray[Any]]:
            image = read_rgb(path)
            shape = detector.batch_shape([image]) if detector.rect else detector.input_shape
            return {input_name: preprocess_batch([image], shape)[0]}

        patterns, types = head_ignored_scope(model) if options.ignore_head_decode else ([], [])
        scope = nncf.IgnoredScope(patterns=patterns, types=types, validate=False) if patterns or types else None
        preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
        advanced = advanced_parameters(options)
        settings: dict[str, Any] = {
            "preset": preset[options.preset],
            "subset_size": min(options.subset_size, len(images)),
            "fast_bias_correction": options.fast_bias_correction,
            "ignored_scope": scope,
        }
        started = time.perf_counter()
        try:
            with _nncf_output_on_stderr(nncf):
                if restore is None:
                    quantized = nncf.quantize(
                        model, nncf.Dataset(images, transform), advanced_parameters=advanced, **settings
                    )
                else:
                    quantized = _quantize_with_accuracy_control(
                        nncf, model, nncf.Dataset(images, transform), transform, restore, options, advanced, settings
                    )
        except Exception as exc:  # NNCF raises many types for graphs it cannot handle; one refusal for all of them
            raise QuantizationRefusedError(
                f"NNCF could not quantize {_describe(metadata)} ({type(exc).__name__}: {str(exc)[:300]}); serve the "
                "FP32 model, or report the architecture with this message"
            ) from exc
        seconds = time.perf_counter() - started
    signed = signed_activation_quantizers(quantized)
    problems = tensorrt_qdq_problems(quantized)
    if problems and options.preset == "performance":
        raise QuantizationRefusedError(
            f"the INT8 graph of {_describe(metadata)} is not TensorRT-compatible: {problems[0]} "
            f"(+{len(problems) - 1} more); serve the FP32 model, or use export.int8.preset=mixed for a CPU-only INT8"
        )
    if problems:
        log.warning("preset %s: %d quantizers are asymmetric (not for TensorRT)", options.preset, len(problems))
    info = {
        "tool": f"nncf {nncf.__version__}",
        "preset": options.preset,
        "subset_size": min(options.subset_size, len(images)),
        "calibration_split": options.calibration_split,
        "seed": options.seed,
        "fast_bias_correction": options.fast_bias_correction,
        "ignored_patterns": patterns,
        "ignored_types": types,
        "overflow_fix": options.overflow_fix,
        "activations": "per_tensor",
        "signed_input_quantizers": signed,
        "quantize_linear_nodes": sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node),
        "tensorrt_compatible": not problems,
        "fp32_sha256": sha256_file(fp32_path),
        "seconds": round(seconds, 1),
    }
    if restore is not None:
        info["accuracy_control"] = {
            "first_gate": "; ".join(restore.failures),
            "first_quantize_linear_nodes": restore.quantizers,
            "max_float_layers": options.max_float_layers,
        }
    meta = dataclasses.replace(metadata, precision="int8", quantization=info)
    props = {p.key: p.value for p in model.metadata_props} | {METADATA_KEY: meta.to_json()}
    del quantized.metadata_props[:]
    for key, value in props.items():
        quantized.metadata_props.add(key=key, value=value)
    return quantized, info


# Images NNCF ranks the quantized layers on: every layer put back to float is scored on each of them, so the time
# grows with layers x images (NNCF's default is the calibration subset, 300). On the 2-core AMD host the quick model's
# 46 layer groups took 25 s on its 40 val images, the small preset's 64 s on 100 val tiles.
_RANKING_IMAGES = 100


def _quantize_with_accuracy_control(
    nncf: Any,
    model: Any,
    calibration: Any,
    transform: Callable[[Path], dict[str, npt.NDArray[Any]]],
    restore: Restore,
    options: Int8Config,
    advanced: Any,
    settings: dict[str, Any],
) -> Any:
    """`nncf.quantize_with_accuracy_control` with the gate's metric: the layers whose float version gives back the
    most mAP50-95 go back to float until the overall drop is within `max_map_drop`, at most `max_float_layers` of them.
    NNCF knows only the overall metric; the per-class rule is the gate's, afterwards."""
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    with GateMetric(model, restore.dataset_dir, restore.split) as metric:
        return nncf.quantize_with_accuracy_control(
            model,
            calibration,
            nncf.Dataset(restore.images, transform),
            metric,
            max_drop=options.max_map_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=options.max_float_layers,
                ranking_subset_size=min(_RANKING_IMAGES, len(restore.images)),
                num_ranking_workers=1,  # the candidates share `metric`'s one session
            ),
            **settings,
        )


class GateMetric:
    """NNCF's validation function: a candidate graph's mAP50-95 on the images of `split` it is given, measured as the
    gate measures it (its quantizers made signed as shipped, `fp32`'s metadata, our runtime on the gate's backend).

    NNCF ranks the layers of an ONNX model only in its "metric" mode (its output-distance mode is OpenVINO-only): it
    scores each layer put back to float on each image's own mAP, one call per image. So the last candidate's session
    is kept between calls (one per candidate, not one per image)."""

    def __init__(self, fp32: Any, dataset_dir: Path, split: str) -> None:
        self.fp32, self.dataset_dir, self.split = fp32, dataset_dir, split
        self._candidate: Any = None
        self._detector: Detector | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="int8-candidate-")

    def __call__(self, candidate: Any, items: Iterable[Path]) -> tuple[float, None]:
        detector = self._load(candidate)
        metrics = match_split(detector, self.dataset_dir, self.split, images=list(items))  # evaluate_split's settings
        return metrics.compute().map50_95, None

    def _load(self, candidate: Any) -> Detector:
        import onnx

        if candidate is not self._candidate:
            self._drop()
            shipped = onnx.ModelProto()
            shipped.CopyFrom(candidate)
            signed_activation_quantizers(shipped)
            del shipped.metadata_props[:]
            shipped.metadata_props.extend(self.fp32.metadata_props)
            path = Path(self._tmp.name) / "candidate.onnx"
            onnx.save(shipped, str(path))
            self._detector = Detector.load(path, backend=_GATE_BACKEND)
            self._candidate = candidate
        assert self._detector is not None
        return self._detector

    def _drop(self) -> None:
        if self._detector is not None:
            self._detector.close()
        self._detector = self._candidate = None

    def __enter__(self) -> GateMetric:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop()
        self._tmp.cleanup()


def _describe(metadata: ModelMetadata) -> str:
    return f"the {metadata.architecture or 'unnamed'} model ({metadata.version})"


def advanced_parameters(options: Int8Config) -> Any:
    """NNCF settings that make one graph right for every backend and CPU.

    - Per-tensor activation scales: NNCF's CPU hardware model lets a *depthwise* convolution's input be quantized
      per channel (`q8_a_ch` in nncf/common/hardware/setups/cpu.py). YOLO11 and YOLO26 heads have depthwise convs
      (the class branch `cv3` is DWConv -> Conv), so without this their graphs carry vector activation scales, which
      TensorRT's explicit quantization refuses (YOLOv8 has none, which is why it passed). One scalar per tensor is
      what TensorRT, OpenVINO and ONNX Runtime all take.
    - `overflow_fix` (see Int8Config): weights on 7 bits so that CPUs without VNNI cannot saturate.
    """
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    return AdvancedQuantizationParameters(
        overflow_fix=OverflowFix(options.overflow_fix),
        activations_quantization_params=QuantizationParameters(per_channel=False),
    )


@contextlib.contextmanager
def _nncf_output_on_stderr(nncf: Any) -> Iterator[None]:
    """NNCF logs and draws progress bars on stdout, which carries the command's JSON result: send them to stderr,
    and keep its per-node INFO lines (hundreds) out unless asked for."""
    from nncf.common.logging import nncf_logger

    nncf.set_log_level(logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    handlers = [h for h in nncf_logger.handlers if isinstance(h, logging.StreamHandler)]
    streams = [(h, _swap_stream(h, sys.stderr)) for h in handlers]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in streams:
            _swap_stream(handler, stream)


def _swap_stream(handler: logging.StreamHandler[Any], stream: Any) -> Any:
    """Point `handler` at `stream`, returning the one it had. Not `setStream`: it flushes the old stream, which can
    be closed by now (NNCF's handler keeps the stdout it was imported under: in-process, a finished test's capture)."""
    with handler.lock or contextlib.nullcontext():
        old, handler.stream = handler.stream, stream
    return old


def val_map(model_path: Path, dataset_dir: Path, split: str) -> MetricsResult:
    with Detector.load(model_path, backend=_GATE_BACKEND) as detector:
        return evaluate_split(detector, dataset_dir, split)


def accuracy_gate(
    fp32_result: MetricsResult, int8_result: MetricsResult, options: Int8Config, name: str = "int8"
) -> tuple[list[str], dict[str, Any]]:
    """Why the INT8 model (or another lower precision, `name`) may not ship ([] when it may) and the numbers for the
    report: the overall mAP50-95 drop, and the promotion gate's per-class rule, so a class the INT8 model lost fails
    it even when the mean hardly moves."""
    fp32, int8 = fp32_result.as_dict(), int8_result.as_dict()
    drop = fp32["mAP50-95"] - int8["mAP50-95"]
    gate = {
        "split": options.gate_split,
        "fp32": fp32,
        name: int8,
        "drop": drop,
        "max_drop": options.max_map_drop,
        "per_class_AP50-95": {"fp32": fp32_result.per_class_ap50_95, name: int8_result.per_class_ap50_95},
        "max_class_drop": options.max_class_drop,
    }
    failures = class_drops(
        fp32_result.per_class_ap50_95,
        int8_result.per_class_ap50_95,
        options.max_class_drop,
        "FP32",
        limit="export.int8.max_class_drop",
    )
    if drop > options.max_map_drop:
        failures.insert(
            0,
            f"{options.gate_split} mAP50-95 {int8['mAP50-95']:.4f} ({name.upper()}) vs {fp32['mAP50-95']:.4f} (FP32), "
            f"a drop of {drop:.4f} > export.int8.max_map_drop {options.max_map_drop}",
        )
    return failures, gate


def bf16_gate(onnx_path: Path, dataset_dir: Path, options: Int8Config) -> dict[str, Any]:
    """The INT8 gate's rules for OpenVINO computing the FP32 model in bf16 on this CPU, so serving may pick bf16
    (`inference.openvino.precision: auto`, detector/runtime/precision.py) only where it kept every class. Not run
    where the CPU has no native bf16 (OpenVINO would emulate it: slower, and not what a bf16 CPU computes)."""
    cpu = cpu_name()
    try:
        native = native_bf16()
    except ImportError:
        return {"passed": False, "reason": "openvino is not installed: bf16 not measured", "cpu": cpu}
    if not native:
        return {"passed": False, "reason": f"this CPU ({cpu}) has no native bf16: not measured", "cpu": cpu}
    bf16 = BackendOptions(openvino=OpenVinoConfig(precision="bf16", hint="latency"))
    try:
        with Detector.load(onnx_path, backend="openvino", options=bf16) as detector:
            bf16_result = evaluate_split(detector, dataset_dir, options.gate_split)
    except ModelLoadError as exc:  # OpenVINO cannot compute some layer in bf16 here: no bf16 on this machine
        why = " ".join(str(exc).split())[-240:]  # OpenVINO's message is many lines; its end names the layer
        return {"passed": False, "reason": f"OpenVINO cannot run this model in bf16 here: ...{why}", "cpu": cpu}
    failures, gate = accuracy_gate(val_map(onnx_path, dataset_dir, options.gate_split), bf16_result, options, "bf16")
    return {"passed": not failures, "reason": "; ".join(failures), "cpu": cpu, "gate": gate}


def _judge(
    quantized: Any, candidate: Path, fp32_result: MetricsResult, dataset_dir: Path, options: Int8Config
) -> tuple[list[str], dict[str, Any]]:
    """Write `quantized` to `candidate` and gate it: why it may not ship ([] when it may), and the numbers."""
    import onnx

    candidate.write_bytes(quantized.SerializeToString())
    onnx.checker.check_model(str(candidate))
    return accuracy_gate(fp32_result, val_map(candidate, dataset_dir, options.gate_split), options)


def export_int8(
    onnx_path: Path,
    out: Path,
    dataset_dir: Path,
    options: Int8Config,
    thresholds: ThresholdsConfig | None = None,
    profile: ProfileConfig | None = None,
) -> dict[str, Any]:
    """Quantize `onnx_path` into `out` if the gate passes; AccuracyGateError (with both numbers) otherwise. A model
    that fails it is quantized once more with accuracy control (`Int8Config.max_float_layers`), and gated again.

    Nothing appears at `out` unless the gate passed; a stale file there is removed when it fails, so no INT8 model
    that looks good is left behind. The INT8 model gets per-class thresholds measured on itself (`thresholds`;
    None: none, not the FP32 model's, which quantization shifts), and its own drift reference profile (`profile`)."""
    from export.profile import add_reference_profile
    from export.thresholds import add_class_thresholds

    onnx_path, out, dataset_dir = Path(onnx_path), Path(out), Path(dataset_dir)
    model, metadata = load_fp32_onnx(onnx_path)
    images = calibration_images(dataset_dir, options.calibration_split, options.subset_size, options.seed)
    gate_images = list_split_images(dataset_dir, options.gate_split)
    if not gate_images:
        raise DatasetError(f"no gate images: {dataset_dir / 'images' / options.gate_split} has no image files")
    fp32_result = val_map(onnx_path, dataset_dir, options.gate_split)
    quantized, info = quantize_model(model, metadata, onnx_path, images, options)
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        candidate = Path(tmp) / out.name
        failures, gate = _judge(quantized, candidate, fp32_result, dataset_dir, options)
        if failures and options.max_float_layers:
            log.warning("INT8 gate failed (%s): quantizing again with accuracy control", "; ".join(failures))
            first = info["quantize_linear_nodes"]
            restore = Restore(dataset_dir, options.gate_split, gate_images, failures, first)
            quantized, info = quantize_model(model, metadata, onnx_path, images, options, restore)
            failures, gate = _judge(quantized, candidate, fp32_result, dataset_dir, options)
            nodes = info["quantize_linear_nodes"]
            gate["accuracy_control"] = {**info["accuracy_control"], "quantize_linear_nodes": nodes}
            if failures:
                failures.append(f"also with up to {options.max_float_layers} layers kept in float (accuracy control)")
        if not failures:  # only a model that will ship
            add_class_thresholds(candidate, dataset_dir, thresholds or ThresholdsConfig(enabled=False))
            add_reference_profile(candidate, dataset_dir, profile or ProfileConfig(enabled=False))
            data = candidate.read_bytes()
    if failures:
        out.unlink(missing_ok=True)
        raise AccuracyGateError(f"INT8 gate failed: {'; '.join(failures)}; {out} not written", gate)
    write_atomic(out, data)
    return {"model": str(out), "source": str(onnx_path), "sha256": sha256_file(out), "quantization": info, "gate": gate}
