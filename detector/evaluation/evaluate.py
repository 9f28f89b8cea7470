"""mAP of a deployed model on a YOLO-format dataset split, computed through our own runtime.

Evaluating the exported artefact (ONNX/OpenVINO/TensorRT via `Detector`) rather than the training checkpoint is
the point: it measures what production serves, pre- and post-processing included.

Thresholds default to Ultralytics' validation settings - `conf=0.001`, `iou=0.7`, `max_det=300`, multi-label
NMS - not to the serving defaults. mAP integrates precision over the whole recall range, so it needs the low-score
tail that a serving threshold (e.g. 0.25) would cut off; with the same settings and the same metric code
(`metrics.py`) the numbers are directly comparable with `yolo val` / training-time mAP, and a drop after export
or quantisation shows up as a real difference rather than a change of protocol.

Layout read (`detector.data.yolo_format`, the same rules as the validator): `<dataset>/images/<split>/` and
`<dataset>/labels/<split>/<stem>.txt` with one `class cx cy w h` row per object (normalised to [0, 1]); a missing
label file means no objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detector.data.yolo_format import IMAGE_SUFFIXES, labels_to_arrays, list_split_images, read_label_file
from detector.errors import DatasetError
from detector.evaluation.metrics import DetectionMetrics, MetricsResult
from detector.runtime.detector import Detector

log = logging.getLogger(__name__)


def evaluate_split(
    detector: Detector,
    dataset_dir: Path,
    split: str = "val",
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    batch_size: int = 8,
    images: Sequence[Path] | None = None,
) -> MetricsResult:
    """Run `detector` over every image of `split` (or only `images`, files of it) and score it against the labels
    (see module docstring)."""
    metrics = match_split(detector, dataset_dir, split, conf, iou, max_det, batch_size, multi_label=True, images=images)
    result = metrics.compute()
    log.info("evaluated %d images of %s/%s: %s", result.n_images, dataset_dir, split, result.as_dict())
    return result


def match_split(
    detector: Detector,
    dataset_dir: Path,
    split: str,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    batch_size: int = 8,
    multi_label: bool = True,
    images: Sequence[Path] | None = None,
) -> DetectionMetrics:
    """The predictions of `detector` on every image of `split` (or only `images`, files of it), matched against the
    labels (not yet scored)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset_dir = Path(dataset_dir)
    images = list_images(dataset_dir, split) if images is None else list(images)
    names = detector.metadata.names
    metrics = DetectionMetrics(names)
    for chunk in _chunks(images, batch_size):
        arrays = [read_rgb(path) for path in chunk]
        preds = detector.predict_batch(arrays, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label)
        for path, image, pred in zip(chunk, arrays, preds, strict=True):
            label_path = dataset_dir / "labels" / split / f"{path.stem}.txt"
            gt_xyxy, gt_cls = read_labels(label_path, image.shape[1], image.shape[0], num_classes=len(names))
            metrics.update(pred, gt_xyxy, gt_cls)
    return metrics


def list_images(dataset_dir: Path, split: str) -> list[Path]:
    """Sorted image files of a split; DatasetError when the folder is missing or holds no images."""
    folder = dataset_dir / "images" / split
    if not folder.is_dir():
        raise DatasetError(f"split {split!r} not found: {folder} is not a directory")
    images = list_split_images(dataset_dir, split)
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
    An invalid line is a DatasetError naming the file and line: scoring around it would give a wrong mAP.
    """
    labels, problems = read_label_file(path, num_classes or None)
    if problems:
        line, message = problems[0]
        more = f" (and {len(problems) - 1} more; run `detector data validate`)" if len(problems) > 1 else ""
        raise DatasetError(f"{path}:{line}: {message}{more}")
    return labels_to_arrays(labels, width, height)


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
