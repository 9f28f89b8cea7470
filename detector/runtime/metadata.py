"""Model metadata embedded in ONNX files: what the runtime needs to pre- and post-process for a model.

This project writes one JSON value under `METADATA_KEY`. ONNX files exported by plain Ultralytics carry their
own keys (`names`, `imgsz`, `stride` as Python literals); those are read too, so any Ultralytics ONNX works.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from detector.errors import MissingMetadataError, ModelLoadError

METADATA_KEY = "detector.metadata"
HeadFormat = Literal["raw", "end2end"]


@dataclass(frozen=True)
class ModelMetadata:
    names: dict[int, str]
    imgsz: tuple[int, int]  # (height, width) of the network input
    stride: int = 32
    head: HeadFormat = "raw"  # raw: (B, 4+nc, N) needs NMS; end2end: (B, K, 6) already suppressed
    version: str = "unversioned"
    architecture: str = ""
    source_run_id: str = ""
    weights_sha256: str = ""
    dataset_version: str = ""
    precision: str = "fp32"
    # How an INT8 model was made (`detector export int8`: tool, preset, calibration, gate); empty otherwise.
    quantization: dict[str, Any] = field(default_factory=dict)
    # Drift statistics of the model on its validation split (`detector.evaluation.profile`); empty when unknown.
    reference_profile: dict[str, Any] = field(default_factory=dict)
    # Per-class confidence thresholds chosen at export (class id -> conf; absent classes use the serving conf) and
    # the rule that chose them (detector.evaluation.thresholds); empty when none were computed.
    class_conf: dict[int, float] = field(default_factory=dict)
    class_conf_rule: str = ""
    # Golden images: a few val images and the boxes this model gave them at export (detector.runtime.golden), for
    # the service's "does it still see" check; empty when none were chosen.
    golden: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_json(self) -> str:
        data = asdict(self)
        data["names"] = {str(k): v for k, v in self.names.items()}
        data["imgsz"] = list(self.imgsz)
        data["class_conf"] = {str(k): v for k, v in self.class_conf.items()}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        data = json.loads(text)
        data["names"] = {int(k): str(v) for k, v in data["names"].items()}
        data["imgsz"] = _pair(data["imgsz"])
        data["class_conf"] = {int(k): float(v) for k, v in data.get("class_conf", {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> ModelMetadata:
        """Build from ONNX `metadata_props`: this project's key first, Ultralytics' keys otherwise."""
        if METADATA_KEY in props:
            try:
                return cls.from_json(props[METADATA_KEY])
            except (ValueError, KeyError, TypeError) as exc:
                raise MissingMetadataError(f"{source}: metadata key {METADATA_KEY!r} is malformed: {exc}") from exc
        if "names" in props and "imgsz" in props:
            try:
                names = {int(k): str(v) for k, v in ast.literal_eval(props["names"]).items()}
                imgsz = _pair(ast.literal_eval(props["imgsz"]))
                stride = int(ast.literal_eval(props.get("stride", "32")))
                end2end = str(props.get("end2end", "False")).lower() == "true"
            except (ValueError, SyntaxError, AttributeError, TypeError) as exc:
                raise MissingMetadataError(f"{source}: Ultralytics metadata is malformed: {exc}") from exc
            return cls(
                names=names,
                imgsz=imgsz,
                stride=stride,
                head="end2end" if end2end else "raw",
                version=props.get("version", "unversioned"),
            )
        raise MissingMetadataError(
            f"{source} has no model metadata (class names, input size). Export it with "
            "`detector export onnx`, or with Ultralytics' own exporter, which embeds them."
        )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    h, w = (int(v) for v in value)
    return (h, w)


def read_onnx_metadata(path: str | Path) -> ModelMetadata:
    """Read metadata from an ONNX file without loading its weights into memory more than needed."""
    import onnx  # core dependency; imported here to keep `import detector.runtime` cheap

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, google.protobuf errors, OSError...
        raise ModelLoadError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    return ModelMetadata.from_props(props, source=str(path))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
