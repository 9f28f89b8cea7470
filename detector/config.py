"""Typed configuration: YAML files in `configs/` (one per concern), dotlist overrides, environment overrides.

Sections: `data`, `train`, `export`, `inference`, `quality` (the promotion gate). Training and serving read disjoint
sections, so each is configured independently. Every key is validated by a pydantic model that forbids unknown keys;
errors name the key.

Precedence, lowest first: the YAML files, then `DETECTOR_<SECTION>__<KEY>[__<SUBKEY>]` environment variables
(read by pydantic-settings, so values stay strings where the schema says str), then dotlist overrides
(`train.epochs=5`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from detector.errors import ConfigError

CONFIG_DIR = Path("configs")
SECTIONS = ("data", "train", "export", "inference", "quality")
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


# What `train.mlflow.champion_metric` may name: `<split>_<metric>` of the evaluate stage's results
# (reports/metrics.json, the ONNX through our runtime), all higher-is-better.
CHAMPION_METRICS: tuple[str, ...] = tuple(
    f"{split}_{metric}" for split in ("val", "test") for metric in ("mAP50", "mAP50-95", "precision", "recall")
)


class MlflowConfig(_Strict):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "yolo-detector"
    registered_model: str = "yolo-detector"
    champion_alias: str = "champion"
    # The evaluate-stage metric the champion alias is awarded on (one of CHAMPION_METRICS; higher is better).
    champion_metric: str = "val_mAP50-95"
    enabled: bool = True

    @field_validator("champion_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in CHAMPION_METRICS:
            raise ValueError(f"unknown champion metric {value!r}; choose one of {', '.join(CHAMPION_METRICS)}")
        return value


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
    # CPU threads a CPU training computes on: "auto" shares this machine's CPUs between the trainings running on it
    # (all of a 2-core machine's when it runs alone; detector/training/threads.py says why and what was measured).
    threads: int | Literal["auto"] = "auto"
    seed: int = 0
    device: str = "cpu"
    project: str = "runs/train"
    name: str = "default"
    # Any further Ultralytics train() argument, passed through unchanged (Ultralytics validates them).
    ultralytics: dict[str, Any] = Field(default_factory=dict)
    mlflow: MlflowConfig = MlflowConfig()

    @field_validator("threads", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        # One message for both halves of the union (pydantic would report each half's failure on its own).
        text = str(value).strip()
        if text == "auto":
            return text
        if text.isdigit() and 1 <= int(text) <= 1024:
            return int(text)
        raise ValueError("give auto or a number of threads from 1 to 1024")

    @property
    def architecture(self) -> str:
        return Path(self.model).stem


# The engine options' allowed values, defined once: EngineConfig checks them, detector.runtime.engines lists them.
EnginePrecision = Literal["fp32", "fp16"]
EngineInputDtype = Literal["float32", "uint8"]


class EngineConfig(_Strict):
    """`export.engine`: the one place its values are checked (`EngineSpec.from_config` takes them as they are)."""

    precision: EnginePrecision = "fp16"
    workspace_gb: float = Field(2.0, gt=0, le=256)
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(4, ge=1)
    max_batch: int = Field(8, ge=1, le=1024)
    engine_dir: str = "models/engines"
    # uint8: the engine takes 0-255 pixels and normalises them on the GPU (a quarter of the bytes to upload).
    # float32 until a GPU has measured that it pays (scripts/gpu_check.py times both uploads).
    input_dtype: EngineInputDtype = "float32"

    @model_validator(mode="after")
    def _ordered(self) -> EngineConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError("engine batches must satisfy min_batch <= opt_batch <= max_batch")
        return self


class Int8Config(_Strict):
    """INT8 post-training quantization (`detector export int8`, the `quantize` stage): NNCF on the ONNX model."""

    out_path: str = "models/int8/model.int8.onnx"
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
    # Saturation on CPUs without VNNI (AVX2, AVX-512F): their u8 x s8 dot products (vpmaddubsw) add pairs into int16
    # and clamp: OpenVINO's kernels then miss the exact quantized scores by up to 0.37, ONNX Runtime's by 0.03
    # (docs/int8.md).
    # enable: every conv/matmul weight uses 7 bits (NNCF's OverflowFix.ENABLE), so no pair can overflow on any CPU;
    # first_layer_only: only the first conv (NNCF's default); disable: full 8 bits (only for VNNI/AMX/GPU targets).
    overflow_fix: Literal["enable", "first_layer_only", "disable"] = "enable"
    # The gate: the stage fails when val mAP50-95 (through our runtime) drops by more than this against FP32, or any
    # one class's AP50-95 by more than max_class_drop (the promotion gate's per-class rule).
    gate_split: str = "val"
    max_map_drop: float = Field(0.01, le=1)
    max_class_drop: float = Field(0.05, ge=0, le=1)
    # When the quantized model fails the gate: NNCF's quantization with accuracy control ranks the quantized layers by
    # the mAP50-95 each gives back in float, and puts the worst ones back into float, one at a time, until gate_split's
    # mAP50-95 is within max_map_drop or this many are float; the gate then judges what it made. 0: refuse at once.
    max_float_layers: int = Field(8, ge=0, le=1000)


class ThresholdsConfig(_Strict):
    """`export.thresholds`: per-class confidence thresholds computed on a split and embedded in the model."""

    enabled: bool = True
    rule: Literal["f1", "precision"] = "f1"  # f1: the confidence maximising F1; precision: the lowest reaching
    precision_target: float = Field(0.9, gt=0, le=1)  # the target; used by rule=precision only
    min: float = Field(0.05, ge=0, le=1)  # every computed threshold is clipped to [min, max]
    max: float = Field(0.95, ge=0, le=1)
    split: str = "val"

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsConfig:
        if self.min > self.max:
            raise ValueError(f"thresholds.min ({self.min}) must be at most thresholds.max ({self.max})")
        return self


class ProfileConfig(_Strict):
    """`export.profile`: the reference profile for drift monitoring, computed on a split and embedded in the model."""

    enabled: bool = True
    split: str = "val"
    # Golden images chosen on the same split and carried in the model: the service checks them at load and on a
    # period (inference.golden); 0: none.
    golden_images: int = Field(4, ge=0, le=64)


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
    thresholds: ThresholdsConfig = ThresholdsConfig()
    profile: ProfileConfig = ProfileConfig()


AuthScope = Literal["predict", "metrics", "admin"]


def _predict_only() -> list[AuthScope]:
    return ["predict"]


class ApiKeyConfig(_Strict):
    """One API key, stored as the SHA-256 of the key (hex): the key itself is shown once, when it is made
    (`python -m api.admission.auth new NAME`), and never stored."""

    name: str = Field(min_length=1, max_length=64)  # who: in the audit log and in /metrics
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[AuthScope] = Field(default_factory=_predict_only, min_length=1)
    rate_per_minute: float = Field(600.0, ge=0)  # sustained requests a minute; 0: no rate limit
    burst: int = Field(20, ge=1)  # requests allowed at once above the sustained rate
    daily_quota: int = Field(0, ge=0)  # requests a UTC day; 0: no quota


class AuthConfig(_Strict):
    """API keys for every endpoint but /health. Off while no key is configured (the local demo)."""

    keys: list[ApiKeyConfig] = Field(default_factory=list)
    keys_file: str = ""  # a YAML file with `keys: [...]` in the same form (e.g. a mounted secret); added to `keys`
    # Refuse to start on a non-loopback host with no key configured (otherwise: a loud warning at start-up).
    require_on_network: bool = False
    audit_log: str = ""  # admin actions, one JSON line each, appended here ("": the log, logger api.audit)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_upload_mb: float = Field(10.0, gt=0, le=1024)
    max_pixels: int = Field(40_000_000, ge=1)
    max_batch: int = Field(8, ge=1, le=256)
    # auto: micro-batch on a GPU, one image per call on a CPU (see api/inference/batching.py for the measurement)
    micro_batching: Literal["auto", "always", "never"] = "auto"
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    queue_size: int = Field(64, ge=1, le=100_000)
    # Fair sharing: batch items and video frames may hold at most this share of queue_size; the rest is kept for
    # single images, which workers also take first (single_priority of them per bulk image while both wait).
    bulk_queue_share: float = Field(0.5, gt=0, le=1)
    single_priority: int = Field(4, ge=1, le=1000)
    # While a single image is being decoded, a worker holds bulk work back this long at most (0: never).
    bulk_hold_ms: float = Field(50.0, ge=0, le=10_000)
    # A batch or a clip waits in line this long for its queue places (or a video job's) before 503 + Retry-After.
    bulk_wait_s: float = Field(10.0, ge=0, le=600)
    # Model threads; 0 (default): one per slot of the loaded backend (TensorRT: one per execution context, so both
    # contexts are busy at once; CPU backends: 1).
    workers: int = Field(0, ge=0, le=64)
    request_timeout_s: float = Field(30.0, gt=0)
    admin_api_key: str = ""  # empty disables the admin (reload) endpoint
    max_det_limit: int = Field(1000, ge=1)
    # Hostile and unlucky clients (see the README's "Limits" section for what each bounds).
    read_timeout_s: float = Field(20.0, gt=0)  # the whole body must arrive within this (408 + close otherwise)
    max_uploads: int = Field(256, ge=1, le=100_000)  # bodies being received at once; beyond: 503 + Retry-After
    decode_pixel_budget: int = Field(48_000_000, ge=1)  # decoded pixels held by all requests together
    decode_wait_s: float = Field(10.0, ge=0)  # how long a request waits for the pixel budget before 503
    decode_mode: Literal["reduced", "exact"] = "reduced"  # reduced: JPEGs decode at the size the model needs
    decode_timeout_s: float = Field(10.0, gt=0)  # an image still decoding after this: 504 (never a silent long wait)
    max_header_bytes: int = Field(16384, ge=1024, le=1_048_576)  # request line + headers; beyond: 400
    keep_alive_s: float = Field(5.0, gt=0, le=300)  # idle keep-alive connections are closed after this
    # Open connections; requests in progress beyond it get 503. Idle connections do not count towards that 503: a
    # new connection past it closes the longest-idle one (api/admission/http_protocol.py).
    max_connections: int = Field(1024, ge=1)
    max_connections_per_client: int = Field(128, ge=0)  # per client address; 0: no cap (behind a reverse proxy)
    head_timeout_s: float = Field(10.0, gt=0, le=300)  # request line + headers must arrive within this; else 408
    model_dir: str = ""  # /admin/reload loads only files under it; empty: the folder of inference.model_path
    max_model_mb: float = Field(2048.0, gt=0)  # /admin/reload refuses larger files before reading them

    max_batch_files: int = Field(16, ge=1, le=1024)  # most `files` parts in one POST /predict/batch
    # POST /predict/video: the clip's size is bounded by max_upload_mb like every body; these bound its length.
    max_video_seconds: float = Field(60.0, gt=0)
    max_video_frames: int = Field(1800, ge=1)
    video_tmp_dir: str = ""  # where uploaded clips are spooled while they are processed ("": the system's temp dir)
    max_video_jobs: int = Field(2, ge=1, le=1024)  # clips being streamed at once; beyond: 503 + Retry-After
    # A stream whose client reads nothing for this long is dropped (its temporary clip removed).
    video_send_timeout_s: float = Field(30.0, gt=0)
    auth: AuthConfig = AuthConfig()
    tls_certfile: str = ""  # PEM certificate (chain): serve HTTPS (uvicorn's ssl_certfile); "": plain HTTP
    tls_keyfile: str = ""  # its private key (uvicorn's ssl_keyfile), when not in the certificate file

    @model_validator(mode="after")
    def _budget_holds_one_image(self) -> ServerConfig:
        if self.decode_pixel_budget < self.max_pixels:
            raise ValueError(
                f"decode_pixel_budget ({self.decode_pixel_budget}) must be at least max_pixels ({self.max_pixels}):"
                " otherwise an image within the limit could never be decoded"
            )
        return self


class OpenVinoConfig(_Strict):
    """The OpenVINO backend's compile settings (CPU)."""

    # f32 keeps results equal to the other backends and to the evaluation. bf16 (CPUs with AVX512_BF16/AMX) is
    # faster there, at a measured mAP cost (README, Performance). auto (configs/inference.yaml's choice for serving
    # and `detector predict`): the fastest of f32, bf16 and the INT8 twin that passed their accuracy gates, measured
    # once per CPU model (detector/runtime/precision.py); int8: the INT8 twin. Evaluation computes what it is given.
    precision: Literal["auto", "f32", "bf16", "int8"] = "f32"
    choice_cache: str = ""  # where auto's measured decisions are kept ("": ~/.cache/yolo-detector/precision.json)
    # latency | throughput: OpenVINO's PERFORMANCE_HINT as is. adaptive: per call, the latency model when alone, a
    # throughput (multi-stream) model when others run (detector/runtime/backends/openvino_backend.py): 1.3x the
    # images/s in-process on 2 cores, but over HTTP on those 2 cores it lost at every concurrency (docs/performance.md;
    # measured with the streams still pinned to cores).
    # auto (configs/inference.yaml's choice): adaptive where the service runs each single image and batch item alone
    # (the latency model, as `latency`; a batch alone, an image's tiles, in equal parts on the streams) and overlaps
    # video frames on throughput streams while singles are quiet, and queued single images beside each other
    # (api/inference/batching.py); latency for images elsewhere (tiles split as in the service); throughput for
    # a clip read from a file (`detector predict clip.mp4`: a frame on each stream at once, `BackendOptions.for_clip`;
    # docs/inference.md). throughput runs one model thread per stream in the service too.
    hint: Literal["auto", "latency", "throughput", "adaptive"] = "latency"
    streams: int = Field(0, ge=0, le=64)  # 0: what the hint picks (adaptive: half the CPU's stream range, >= 2)
    # Compiled static-shape models kept (one per letterboxed input shape); 0 compiles the dynamic model once.
    shape_cache: int = Field(8, ge=0, le=256)


class ShadowConfig(_Strict):
    """Champion/challenger: a second model scored against the served one on a share of live requests
    (api/monitoring/shadow.py)."""

    model: str = ""  # a file or models:/<name>@challenger; "" turns shadow scoring off
    sample: float = Field(1.0, ge=0, le=1)  # share of /predict and /predict/batch images also sent to the challenger
    queue: int = Field(4, ge=1, le=1024)  # images waiting for the challenger; beyond it new ones are shed
    iou: float = Field(0.5, gt=0, le=1)  # IoU at which a challenger box matches a served box (same class)
    threads: int = Field(1, ge=1, le=256)  # the challenger's intra-op threads: it must not take the served path's CPU
    backend: str = ""  # "": the served model's inference.backend

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value and value not in BACKEND_CHOICES:
            raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(BACKEND_CHOICES)} or leave empty")
        return value


class DriftConfig(_Strict):
    """`inference.drift`: live traffic vs the model's reference profile (docs/monitoring.md)."""

    enabled: bool = True  # off, or a model without a profile: no drift metrics, nothing computed per request
    window: int = Field(1000, ge=10, le=1_000_000)  # the last N /predict images
    min_images: int = Field(200, ge=1)  # PSI is NaN below this many images in the window


class InboxConfig(_Strict):
    """`inference.inbox`: active learning. A share of the /predict images the model is unsure of, as received, with
    its boxes as YOLO pre-labels, kept in a folder for review and `detector data import` (docs/inbox.md). Off by
    default: it stores what clients send."""

    enabled: bool = False
    dir: str = "inbox"  # relative paths are resolved from the server's working folder
    # Why an image is kept (any of): a box whose confidence is in [low, high) ...
    conf_band: tuple[float, float] = (0.25, 0.5)
    # ... the shadow challenger (inference.shadow) disagreed on it (a box unmatched on either side) ...
    shadow_disagreement: bool = True
    # ... or its brightness, contrast or size fell in a bin holding less than this share of the reference profile
    # (0: off).
    drift_outlier_share: float = Field(0.01, ge=0, lt=1)
    sample: float = Field(1.0, ge=0, le=1)  # share of the qualifying images kept
    max_mb: float = Field(1024, gt=0)  # the inbox never holds more (images + labels); beyond, new images are skipped
    max_files: int = Field(10_000, ge=1)  # ... nor more images than this
    queue: int = Field(16, ge=1, le=1024)  # images waiting to be written; beyond, new ones are skipped (never waited)

    @field_validator("conf_band")
    @classmethod
    def _ordered_band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low <= high <= 1:
            raise ValueError(f"conf_band must be [low, high] with 0 <= low <= high <= 1, got {list(value)}")
        return value


class TracingConfig(_Strict):
    """`inference.tracing`: OpenTelemetry spans per request and per stage, exported over OTLP/HTTP
    (api/monitoring/tracing.py)."""

    enabled: bool = False  # off: nothing is traced and the OpenTelemetry SDK is never imported
    # OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces; "": OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
    # OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318/v1/traces.
    endpoint: str = ""
    service_name: str = "yolo-detector"
    # Share of requests traced when the caller sends no sampled traceparent (one that does is always traced):
    # every request costs +10-18 % of a 7 ms /predict on 2 vCPUs, 0.1 costs +2.6 % (docs/monitoring.md#tracing).
    sample: float = Field(0.1, ge=0, le=1)
    export_timeout_s: float = Field(10.0, gt=0, le=300)


class GoldenConfig(_Strict):
    """`inference.golden`: check the model's golden images (export.profile.golden_images) at load and on a period."""

    enabled: bool = True
    period_s: float = Field(300.0, ge=0)  # 0: at load only
    min_match_rate: float = Field(0.9, ge=0, le=1)  # per image: matched boxes over all boxes of both sides
    iou: float = Field(0.5, gt=0, le=1)  # a box matches a recorded one of its class at IoU >= this


class TilingConfig(_Strict):
    """`inference.tiling`: how a request's `tile=WxH` is run (detector/runtime/tiling.py)."""

    merge: Literal["nms", "nmm"] = "nms"  # nms: keep the best of overlapping boxes; nmm: merge them (SAHI's default)
    match_threshold: float = Field(0.5, gt=0, le=1)  # IoU (nms) or intersection over the smaller box (nmm)
    full_image: bool = False  # also detect the whole image (large objects a tile cuts), as SAHI's standard pass
    max_tiles: int = Field(64, ge=1, le=4096)  # most tiles one request may cut; more: 422 naming `tile`


class InferenceConfig(_Strict):
    # A file, or an MLflow registry URI (models:/yolo-detector@champion) resolved through train.mlflow.tracking_uri.
    model_path: str = "models/model.onnx"
    registry_cache_dir: str = "models/registry"  # registry downloads, one folder per <name>/<version>
    backend: str = "auto"  # one of BACKEND_CHOICES
    device: str = "auto"
    threads: int = Field(0, ge=0, le=256)
    conf: float = Field(0.25, ge=0, le=1)
    # Apply the per-class thresholds embedded in the model (export.thresholds) when a request gives no `conf`;
    # false: `conf` for every class.
    class_thresholds: bool = True
    iou: float = Field(0.7, ge=0, le=1)
    max_det: int = Field(300, ge=1, le=100_000)
    # Letterbox each batch to the smallest stride-multiple rectangle (where the model allows any height/width).
    rect: bool = True
    openvino: OpenVinoConfig = OpenVinoConfig()
    shadow: ShadowConfig = ShadowConfig()
    server: ServerConfig = ServerConfig()
    drift: DriftConfig = DriftConfig()
    inbox: InboxConfig = InboxConfig()
    tracing: TracingConfig = TracingConfig()
    golden: GoldenConfig = GoldenConfig()
    tiling: TilingConfig = TilingConfig()

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKEND_CHOICES:
            raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(BACKEND_CHOICES)}")
        return value


# The backends the quality report scores every model on (TensorRT only where a GPU is; skipped and said so elsewhere).
QUALITY_BACKENDS: tuple[str, ...] = ("onnxruntime", "openvino", "tensorrt")


class QualityConfig(_Strict):
    """The promotion gate (`detector evaluate`, `detector registry promote`): per class, per backend.

    The champion alias moves only when no class of the candidate lost more than `max_class_drop` AP50-95 against the
    current champion, and every backend's FP32 boxes agree with the trained `.pt`'s on the validation split."""

    split: str = "val"
    max_class_drop: float = Field(0.05, ge=0, le=1)  # AP50-95, absolute, per class, against the champion
    min_parity: float = Field(0.9, ge=0, le=1)  # share of boxes matched with the .pt's (Agreement.match_rate)
    parity_iou: float = Field(0.9, gt=0, le=1)  # IoU at which two boxes of the same class count as the same box
    parity_conf: float = Field(0.25, ge=0, le=1)  # both sides' score threshold: what a served model keeps
    backends: list[str] = Field(default_factory=lambda: list(QUALITY_BACKENDS))
    # `registry promote --shadow-url`: the challenger must have been shadow-scored on at least this many requests
    # (0: no shadow sample required).
    min_shadow_samples: int = Field(0, ge=0)

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in BACKEND_NAMES]
        if unknown or not value:
            raise ValueError(f"backends must be a non-empty list of {', '.join(BACKEND_NAMES)}; got {value}")
        return value


class Config(_Strict):
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    inference: InferenceConfig = InferenceConfig()
    quality: QualityConfig = QualityConfig()

    @property
    def onnx_imgsz(self) -> int:
        return self.export.imgsz or self.train.imgsz


class _EnvSchema(BaseSettings):
    """Where pydantic-settings looks: `DETECTOR_<SECTION>__<KEY>[__<SUBKEY>]`, case-insensitive, `null` for None."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False, env_parse_none_str="null"
    )
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    inference: InferenceConfig = InferenceConfig()
    quality: QualityConfig = QualityConfig()


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of `os.environ` (tests, Dockerfiles)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(_EnvSchema)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # What the base class does with os.environ (see DotEnvSettingsSource): fold the case, `null` -> None.
        return {k.lower(): (None if v == "null" else v) for k, v in self._environ.items()}


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`DETECTOR_INFERENCE__SERVER__PORT=9000` -> `{"inference": {"server": {"port": "9000"}}}`.

    pydantic-settings splits the names on the nested delimiter and leaves every value a string unless the schema
    field is complex (a JSON value for a mapping), so `ADMIN_API_KEY=12345678` stays the string "12345678" and
    pydantic converts `PORT=9000` to an int where the schema says int. OmegaConf's dotlist parsing, used before,
    turned such values into YAML scalars first (an int), which then failed validation as a str.
    """
    try:
        values = _EnvSource(environ)()
    except SettingsError as exc:
        raise ConfigError(f"environment override: {exc} (a mapping must be given as JSON)") from exc
    # `train.ultralytics` passes any Ultralytics argument through untyped: parse its values as YAML scalars, as the
    # dotlist `train.ultralytics.mosaic=0.5` does, so Ultralytics gets 0.5 and not "0.5".
    ultralytics = values.get("train", {}).get("ultralytics")
    if isinstance(ultralytics, dict):
        values["train"]["ultralytics"] = {
            k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in ultralytics.items()
        }
    return values


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
            except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: cannot parse YAML: {exc}") from exc
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"{path}: expected a mapping at the top level")
            merged = OmegaConf.merge(merged, loaded)  # type: ignore[assignment]
    elif config_dir != CONFIG_DIR:
        raise ConfigError(f"config directory not found: {config_dir}")
    env = _env_overrides(os.environ if environ is None else environ)
    dotlist = list(overrides or [])
    for item in dotlist:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.epochs=5)")
    try:
        merged = OmegaConf.merge(merged, OmegaConf.create(env), OmegaConf.from_dotlist(dotlist))  # type: ignore[assignment]
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
