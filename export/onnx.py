"""ONNX export from Ultralytics weights, with this project's metadata embedded in the file.

The ONNX file is the portable, versioned artifact: every backend (ONNX Runtime, OpenVINO, TensorRT engines built
from it) reads class names, input size and provenance from its `detector.metadata` property.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from detector.errors import MissingDependencyError, ModelLoadError
from detector.files import write_atomic
from detector.runtime.metadata import METADATA_KEY, ModelMetadata, sha256_file


def _output_head(model: object) -> str:
    """`end2end` for `(B, K, 6)` outputs (NMS inside the model), `raw` for `(B, 4+nc, N)` heads."""
    dims = model.graph.output[0].type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return "end2end" if len(dims) == 3 and dims[2].dim_value == 6 else "raw"


def export_onnx(
    weights: str | Path,
    out: str | Path,
    imgsz: int,
    opset: int = 17,
    dynamic: bool = True,
    simplify: bool = True,
    half: bool = False,
    version: str = "",
    source_run_id: str = "",
    dataset_version: str = "",
    architecture: str = "",
    end2end: bool = True,
) -> ModelMetadata:
    """Export `weights` (an Ultralytics .pt) to `out` with embedded metadata; return that metadata.

    The file appears at `out` only once it is complete and has passed `onnx.checker`.
    """
    try:
        import onnx
        from ultralytics import YOLO
    except ImportError as exc:
        raise MissingDependencyError(f"ONNX export needs the `train` extra (uv sync --extra train): {exc}") from exc

    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise ModelLoadError(f"weights not found: {weights}")
    weights_sha = sha256_file(weights)
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        # Ultralytics writes the ONNX beside the weights: export from a private copy so nothing leaks next to them.
        local = Path(tmp) / weights.name
        shutil.copy2(weights, local)
        try:
            model = YOLO(str(local))
        except Exception as exc:  # Ultralytics raises assorted errors for bad checkpoints
            raise ModelLoadError(f"cannot load Ultralytics weights {weights}: {exc}") from exc
        options = {"format": "onnx", "imgsz": imgsz, "opset": opset, "dynamic": dynamic, "simplify": simplify}
        if end2end:  # nms=False selects the NMS-free head where one exists; heads without one are unaffected
            options["nms"] = False
        if half:  # Ultralytics warns when `half` is passed at all, even as False
            options["half"] = True
        produced = Path(model.export(**options))
        proto = onnx.load(str(produced))
        names = {int(k): str(v) for k, v in model.names.items()}
        stride = int(max(getattr(model.model, "stride", [32])))
        # The checkpoint remembers the architecture YAML it was built from (e.g. yolov8n.yaml).
        yaml_file = (getattr(model.model, "yaml", None) or {}).get("yaml_file", "")
        architecture = architecture or Path(str(yaml_file or weights.stem)).stem
        metadata = ModelMetadata(
            names=names,
            imgsz=(imgsz, imgsz),
            stride=stride,
            head="end2end" if _output_head(proto) == "end2end" else "raw",
            version=version or f"{architecture}-{weights_sha[:8]}",
            architecture=architecture,
            source_run_id=source_run_id,
            weights_sha256=weights_sha,
            dataset_version=dataset_version,
            precision="fp16" if half else "fp32",
        )
        props = {p.key: p.value for p in proto.metadata_props}
        props[METADATA_KEY] = metadata.to_json()
        del proto.metadata_props[:]
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        write_atomic(out, proto.SerializeToString())
    return metadata
