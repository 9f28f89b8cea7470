"""Typed configuration: YAML files in `configs/` (one per concern), dotlist overrides, environment overrides.

Sections: `data`, `train`, `export`, `inference`. Training and serving read disjoint sections, so each is
configured independently. Every key is validated by a pydantic model that forbids unknown keys; errors name the key.

Precedence, lowest first: the YAML files, then `DETECTOR_<SECTION>__<KEY>[__<SUBKEY>]` environment variables,
then dotlist overrides (`train.epochs=5`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detector.errors import ConfigError

CONFIG_DIR = Path("configs")
SECTIONS = ("data", "train", "export", "inference")
ENV_PREFIX = "DETECTOR_"
# The inference backends, fastest first (the order `auto` tries them). `detector.runtime.backends.REGISTRY` maps each
# to its class; a test keeps the two in step. "auto" picks the first that runs here.
BACKEND_NAMES: tuple[str, ...] = ("tensorrt", "openvino", "onnxruntime")
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKEND_NAMES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSizes(_Strict):
    train: int = Field(400, ge=1)
    val: int = Field(80, ge=1)
    test: int = Field(80, ge=0)


class DataConfig(_Strict):
    version: str = Field("v1", pattern=r"^[A-Za-z0-9_.-]+$")
    # "generated": the bundled generator writes data/<version>/. Otherwise a path to your own YOLO dataset
    # (a folder with images/{train,val[,test]} and labels/..., plus a data.yaml giving class names).
    source: str = "generated"
    root: str = "data"
    seed: int = 0
    imgsz: int = Field(256, ge=64, le=4096)
    splits: SplitSizes = SplitSizes()

    @property
    def dataset_dir(self) -> Path:
        if self.source != "generated":
            return Path(self.source)
        return Path(self.root) / self.version


class MlflowConfig(_Strict):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "yolo-detector"
    registered_model: str = "yolo-detector"
    champion_alias: str = "champion"
    # The validation metric the champion alias is awarded on (higher is better).
    champion_metric: str = "val_mAP50-95"
    enabled: bool = True


class TrainConfig(_Strict):
    # An Ultralytics architecture YAML (trained from scratch: nothing is downloaded) or a local .pt to fine-tune.
    model: str = "yolov8n.yaml"
    epochs: int = Field(20, ge=1, le=10_000)
    imgsz: int = Field(256, ge=32, le=4096)
    batch: int = Field(16, ge=1, le=4096)
    lr0: float = Field(0.01, gt=0, le=1)
    optimizer: str = "auto"
    patience: int = Field(100, ge=0)
    workers: int = Field(2, ge=0, le=64)
    seed: int = 0
    device: str = "cpu"
    project: str = "runs/train"
    name: str = "default"
    # Any further Ultralytics train() argument, passed through unchanged (Ultralytics validates them).
    ultralytics: dict[str, Any] = Field(default_factory=dict)
    mlflow: MlflowConfig = MlflowConfig()

    @property
    def architecture(self) -> str:
        return Path(self.model).stem


class EngineConfig(_Strict):
    precision: Literal["fp32", "fp16"] = "fp16"
    workspace_gb: float = Field(2.0, gt=0, le=256)
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(4, ge=1)
    max_batch: int = Field(8, ge=1, le=1024)
    engine_dir: str = "models/engines"

    @model_validator(mode="after")
    def _ordered(self) -> EngineConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError("engine batches must satisfy min_batch <= opt_batch <= max_batch")
        return self


class Int8Config(_Strict):
    """INT8 post-training quantization (`detector export int8`, the `quantize` stage): NNCF on the ONNX model."""

    out_path: str = "models/model.int8.onnx"
    # Calibration: a deterministic sample (seeded) of this split of the configured dataset.
    calibration_split: str = "train"
    subset_size: int = Field(300, ge=1, le=100_000)
    seed: int = 0
    # performance: symmetric activations and weights, zero points 0 (what TensorRT's explicit quantization needs).
    # mixed: asymmetric activations (zero points != 0), OpenVINO/ONNX Runtime only.
    preset: Literal["performance", "mixed"] = "performance"
    fast_bias_correction: bool = True
    # Keep the head's box decode (DFL softmax/conv, anchor arithmetic, sigmoid, concat) in float: quantizing it is
    # the known cause of INT8 mAP collapsing to zero.
    ignore_head_decode: bool = True
    # The gate: the stage fails when val mAP50-95 (through our runtime) drops by more than this against FP32.
    gate_split: str = "val"
    max_map_drop: float = Field(0.01, le=1)


class ExportConfig(_Strict):
    onnx_path: str = "models/model.onnx"
    imgsz: int | None = Field(None, ge=32, le=4096)  # None: the training image size
    opset: int = Field(17, ge=11, le=23)
    dynamic: bool = True
    simplify: bool = True
    half: bool = False
    # Export the NMS-free (end-to-end) head when the architecture has one (YOLO26, YOLOv10): `(B, K, 6)` outputs.
    end2end: bool = True
    engine: EngineConfig = EngineConfig()
    int8: Int8Config = Int8Config()


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_upload_mb: float = Field(10.0, gt=0, le=1024)
    max_pixels: int = Field(40_000_000, ge=1)
    max_batch: int = Field(8, ge=1, le=256)
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    queue_size: int = Field(64, ge=1, le=100_000)
    workers: int = Field(1, ge=1, le=64)
    request_timeout_s: float = Field(30.0, gt=0)
    admin_api_key: str = ""  # empty disables the admin (reload) endpoint
    max_det_limit: int = Field(1000, ge=1)


class OpenVinoConfig(_Strict):
    """The OpenVINO backend's compile settings (CPU)."""

    # f32 keeps results equal to the other backends and to the evaluation. bf16 (CPUs with AVX512_BF16/AMX) is
    # faster there, at a measured mAP cost (README, Performance).
    precision: Literal["f32", "bf16"] = "f32"
    hint: Literal["latency", "throughput"] = "latency"
    streams: int = Field(0, ge=0, le=64)  # 0: what the hint picks
    # Compiled static-shape models kept (one per letterboxed input shape); 0 compiles the dynamic model once.
    shape_cache: int = Field(8, ge=0, le=256)


class InferenceConfig(_Strict):
    model_path: str = "models/model.onnx"
    backend: str = "auto"  # one of BACKEND_CHOICES
    device: str = "auto"
    threads: int = Field(0, ge=0, le=256)
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.7, ge=0, le=1)
    max_det: int = Field(300, ge=1, le=100_000)
    # Letterbox each batch to the smallest stride-multiple rectangle (where the model allows any height/width).
    rect: bool = True
    openvino: OpenVinoConfig = OpenVinoConfig()
    server: ServerConfig = ServerConfig()

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKEND_CHOICES:
            raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(BACKEND_CHOICES)}")
        return value


class Config(_Strict):
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    inference: InferenceConfig = InferenceConfig()

    @property
    def onnx_imgsz(self) -> int:
        return self.export.imgsz or self.train.imgsz


def _env_overrides(environ: dict[str, str]) -> list[str]:
    """`DETECTOR_INFERENCE__SERVER__PORT=9000` -> `inference.server.port=9000`."""
    out = []
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if path[0] in SECTIONS:
            out.append(".".join(path) + "=" + value)
    return out


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (check the spelling; see configs/ for valid keys)")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    overrides: list[str] | None = None,
    config_dir: str | Path | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Load and validate the configuration; raise ConfigError naming the offending key or file."""
    config_dir = Path(config_dir) if config_dir is not None else CONFIG_DIR
    merged: DictConfig = OmegaConf.create({})
    if config_dir.is_dir():
        for section in SECTIONS:
            path = config_dir / f"{section}.yaml"
            if not path.exists():
                continue
            try:
                loaded = OmegaConf.load(path)
            except (OmegaConfBaseException, OSError, ValueError) as exc:
                raise ConfigError(f"{path}: cannot parse YAML: {exc}") from exc
            except Exception as exc:  # yaml.YAMLError and friends
                raise ConfigError(f"{path}: cannot parse YAML: {exc}") from exc
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"{path}: expected a mapping at the top level")
            merged = OmegaConf.merge(merged, loaded)  # type: ignore[assignment]
    elif config_dir != CONFIG_DIR:
        raise ConfigError(f"config directory not found: {config_dir}")
    dotlist = _env_overrides(dict(os.environ if environ is None else environ)) + list(overrides or [])
    for item in dotlist:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.epochs=5)")
    try:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(dotlist))  # type: ignore[assignment]
        raw = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid override or interpolation: {exc}") from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from exc


def config_to_flat_dict(config: Config) -> dict[str, Any]:
    """`{"train.epochs": 20, ...}` for experiment trackers."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    walk("", config.model_dump())
    return flat


# Every leaf key of the schema; the shipped configs/ files spell out each one (checked by the tests).
REPO_CONFIG_KEYS: tuple[str, ...] = tuple(config_to_flat_dict(Config()))
