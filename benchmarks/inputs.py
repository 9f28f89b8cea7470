"""What every runner is fed: the same decoded images, and the same ONNX file per input size.

The shipped model is exported at one fixed size, so other sizes (640 by default) are exported from its weights into
a cache folder keyed by the weights' sha256, and reused by later runs.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from benchmarks.errors import BenchmarkInputError
from detector.data.yolo_format import IMAGE_SUFFIXES
from detector.errors import DetectorError
from detector.runtime.images import read_image
from detector.runtime.metadata import ModelMetadata, read_onnx_metadata, sha256_file

log = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class ModelVariant:
    """One ONNX file at one input size (the shipped model, or a re-export of its weights)."""

    size: int
    path: Path
    origin: str  # "model" | "exported from <weights>"


@dataclass
class ModelSet:
    path: Path
    metadata: ModelMetadata
    sha256: str
    variants: list[ModelVariant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load_model_info(path: Path) -> tuple[ModelMetadata, str]:
    """Metadata and sha256 of `path`; BenchmarkInputError when it is missing or not a readable ONNX model."""
    try:
        metadata = read_onnx_metadata(path)
    except DetectorError as exc:
        raise BenchmarkInputError(f"model {path} cannot be used: {exc}") from exc
    return metadata, sha256_file(path)


def prepare_models(path: Path, sizes: list[int] | None, weights: Path | None, cache_dir: Path) -> ModelSet:
    """The model plus one variant per requested size (`None`: the model's own size and 640)."""
    metadata, sha = load_model_info(path)
    native = metadata.imgsz[0]
    if metadata.imgsz[0] != metadata.imgsz[1]:
        log.warning("model input is not square (%s); sizes refer to its height", metadata.imgsz)
    models = ModelSet(path=path, metadata=metadata, sha256=sha)
    for size in dict.fromkeys(sizes or [native, 640]):
        if size == native:
            models.variants.append(ModelVariant(size, path, "model"))
            continue
        if metadata.precision == "int8":  # a re-export from the weights would be FP32, not this model
            models.notes.append(
                f"size {size} skipped: {path} is an INT8 model at {native} px; quantize a {size} px export "
                "(`detector export int8`) and pass it, or run `python -m benchmarks.peers`"
            )
            continue
        if weights is None or not weights.is_file():
            models.notes.append(
                f"size {size} skipped: the model is exported at {native} px and no weights ({weights}) exist to "
                "re-export it"
            )
            continue
        try:
            models.variants.append(
                ModelVariant(size, export_variant(weights, size, cache_dir), f"exported from {weights}")
            )
        except Exception as exc:  # export failures come from torch/ultralytics/onnx in many types
            models.errors.append(f"size {size}: export from {weights} failed: {type(exc).__name__}: {exc}")
    return models


def export_variant(weights: Path, size: int, cache_dir: Path) -> Path:
    """`weights` exported to ONNX at `size` px, cached by the weights' content hash (re-exported only if absent)."""
    from export.onnx import export_onnx  # needs ultralytics + torch: imported only when a variant is missing

    out = cache_dir / f"{weights.stem}-{sha256_file(weights)[:12]}-{size}.onnx"
    if not out.is_file():
        log.info("exporting %s at %d px to %s", weights, size, out)
        export_onnx(weights, out, imgsz=size)  # writes atomically, so a killed run leaves no half file
    return out


def ultralytics_assets() -> list[Path]:
    """The two real photos bundled with Ultralytics (bus.jpg 810x1080, zidane.jpg 1280x720), if installed."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        return []
    assets = Path(spec.origin).parent / "assets"
    return sorted(p for p in assets.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def synthetic_image(height: int = 720, width: int = 1280, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A deterministic RGB image with flat shapes on noise: something to letterbox when no photo is at hand."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = (220, 40, 40)
    return image


def load_images(folder: Path | None, limit: int = 16) -> tuple[list[npt.NDArray[np.uint8]], str]:
    """Decoded RGB images (from `folder`, else Ultralytics' bundled photos, else a synthetic one) and their source."""
    if folder is not None:
        if not folder.is_dir():
            raise BenchmarkInputError(f"image folder not found: {folder}")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        if not paths:
            raise BenchmarkInputError(f"no {'/'.join(sorted(IMAGE_SUFFIXES))} images in {folder}")
        try:
            return [read_image(p) for p in paths], str(folder)
        except DetectorError as exc:
            raise BenchmarkInputError(str(exc)) from exc
    assets = ultralytics_assets()
    if assets:
        return [read_image(p) for p in assets], "ultralytics assets: " + ", ".join(p.name for p in assets)
    return [synthetic_image()], "synthetic 1280x720"


def take(images: list[npt.NDArray[np.uint8]], n: int) -> list[npt.NDArray[np.uint8]]:
    """`n` images, cycling through `images`: every runner gets the same list for a given batch size."""
    return list(itertools.islice(itertools.cycle(images), n))


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
