"""mAP of a deployed model on a YOLO-format dataset split, computed through our own runtime.

Evaluating the exported artefact (ONNX/OpenVINO/TensorRT via `Detector`) rather than the training checkpoint is
the point: it measures what production serves, pre- and post-processing included.

Thresholds default to Ultralytics' validation settings - `conf=0.001`, `iou=0.7`, `max_det=300`, multi-label
NMS - not to the serving defaults. mAP integrates precision over the whole recall range, so it needs the low-score
tail that a serving threshold (e.g. 0.25) would cut off; with the same settings and the same metric code
(`metrics.py`) the numbers are directly comparable with `yolo val` / training-time mAP, and a drop after export
or quantisation shows up as a real difference rather than a change of protocol.

Layout read: `<dataset>/images/<split>/*.{jpg,jpeg,png,bmp,webp}` and `<dataset>/labels/<split>/<stem>.txt`
with one `class cx cy w h` row per object (normalised to [0, 1]); a missing label file means no objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detector.errors import DatasetError
from detector.evaluation.metrics import DetectionMetrics, MetricsResult
from detector.runtime.detector import Detector

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def evaluate_split(
    detector: Detector,
    dataset_dir: Path,
    split: str = "val",
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    batch_size: int = 8,
) -> MetricsResult:
    """Run `detector` over every image of `split` and score it against the labels (see module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset_dir = Path(dataset_dir)
    images = list_images(dataset_dir, split)
    names = detector.metadata.names
    metrics = DetectionMetrics(names)
    for chunk in _chunks(images, batch_size):
        arrays = [read_rgb(path) for path in chunk]
        preds = detector.predict_batch(arrays, conf=conf, iou=iou, max_det=max_det, multi_label=True)
        for path, image, pred in zip(chunk, arrays, preds, strict=True):
            label_path = dataset_dir / "labels" / split / f"{path.stem}.txt"
            gt_xyxy, gt_cls = read_labels(label_path, image.shape[1], image.shape[0], num_classes=len(names))
            metrics.update(pred, gt_xyxy, gt_cls)
    result = metrics.compute()
    log.info("evaluated %d images of %s/%s: %s", result.n_images, dataset_dir, split, result.as_dict())
    return result


def list_images(dataset_dir: Path, split: str) -> list[Path]:
    """Sorted image files of a split; DatasetError when the folder is missing or holds no images."""
    folder = dataset_dir / "images" / split
    if not folder.is_dir():
        raise DatasetError(f"split {split!r} not found: {folder} is not a directory")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"split {split!r} is empty: no {'/'.join(sorted(IMAGE_SUFFIXES))} files in {folder}")
    return images


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Decode an image file to RGB uint8 (cv2 also applies EXIF orientation, as Ultralytics' loader does)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"cannot read image {path}: unsupported or corrupt file")
    rgb: npt.NDArray[np.uint8] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # type: ignore[assignment,unused-ignore]
    return rgb


def read_labels(
    path: Path, width: int, height: int, num_classes: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """YOLO label file -> `(m, 4)` xyxy boxes in pixels of a `width` x `height` image and `(m,)` classes.

    A missing file means an image without objects. `num_classes > 0` rejects class ids the model cannot predict.
    """
    if not path.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    rows: list[list[float]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        rows.append(_parse_row(path, lineno, line, num_classes))
    if not rows:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    labels = np.asarray(rows, dtype=np.float32)
    # Ultralytics' dataset loader drops exact duplicate rows before validating; do the same so counts agree.
    _, first = np.unique(labels, axis=0, return_index=True)
    if len(first) < len(labels):
        log.warning("%s: %d duplicate labels removed", path, len(labels) - len(first))
        labels = labels[np.sort(first)]
    cx, cy, w, h = (labels[:, k] for k in range(1, 5))
    xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return xyxy.astype(np.float32), labels[:, 0].astype(np.int64)


def _parse_row(path: Path, lineno: int, line: str, num_classes: int) -> list[float]:
    where = f"{path}:{lineno}"
    parts = line.split()
    if len(parts) != 5:
        raise DatasetError(f"{where}: expected 5 values 'class cx cy w h', got {len(parts)}: {line.strip()!r}")
    try:
        values = [float(v) for v in parts]
    except ValueError as exc:
        raise DatasetError(f"{where}: non-numeric value in {line.strip()!r}") from exc
    cls = values[0]
    if cls != int(cls) or cls < 0 or (num_classes and cls >= num_classes):
        raise DatasetError(f"{where}: class {parts[0]!r} is not an integer in [0, {num_classes or 'nc'})")
    if not all(np.isfinite(values[1:])) or min(values[1:]) < 0 or max(values[1:]) > 1.01:
        # 1.01 and the non-negative check follow Ultralytics' label verification tolerance.
        raise DatasetError(f"{where}: coordinates must be normalised to [0, 1], got {line.strip()!r}")
    return values


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
