"""Rewriting the metadata of a candidate ONNX file (before it is moved to its final, DVC-tracked path)."""

from __future__ import annotations

from pathlib import Path

from detector.runtime.metadata import METADATA_KEY, ModelMetadata


def rewrite_metadata(model_path: Path, metadata: ModelMetadata) -> None:
    """Replace this project's metadata key in `model_path` (other keys, e.g. Ultralytics', are kept)."""
    import onnx

    proto = onnx.load(str(model_path))
    props = {p.key: p.value for p in proto.metadata_props} | {METADATA_KEY: metadata.to_json()}
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    model_path.write_bytes(proto.SerializeToString())
