"""A Q/DQ INT8 ONNX of a model, made with ONNX Runtime's static quantizer (the TensorRT tests' INT8 input)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx

from detector.runtime.metadata import read_onnx_metadata
from export.model_metadata import rewrite_metadata


def qdq_onnx_of(model_path: Path, dataset_dir: Path, out: Path) -> tuple[Path, np.ndarray]:
    """A Q/DQ INT8 ONNX of the quick model with its metadata (ONNX Runtime's static quantizer, 4 images), and the
    letterboxed batch it was calibrated on."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from detector.runtime.images import read_image
    from detector.runtime.preprocess import preprocess_batch

    paths = sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:4]
    batch, _ = preprocess_batch([read_image(p) for p in paths], (128, 128), np.dtype(np.float32))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(model_path), str(out), Reader(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8)
    model, source = onnx.load(str(out)), onnx.load(str(model_path))
    if not model.metadata_props:
        model.metadata_props.extend(source.metadata_props)
    # This quantization (4 images, ORT's defaults) keeps the graph's plumbing, not the model's answers: it finds
    # nothing on the val images. So the FP32 model's golden images and drift profile do not describe it (the
    # pipeline's quantize stage measures the INT8 model's own); keeping them would make the service refuse it.
    onnx.save(model, str(out))
    rewrite_metadata(out, dataclasses.replace(read_onnx_metadata(out), golden=[], reference_profile={}))
    return out, batch
