"""The YOLO detection dataset format, once: which files are images, what a label line is, how data.yaml is written.

The validator, the evaluation, the generator, training and the importers all read and write datasets through this
module, so they agree on every tolerance and on which files count.

Label line: `class cx cy w h`, the box centre and size normalised to [0, 1] by the image's width and height.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml

# Image files a dataset may hold: the formats both OpenCV (evaluation) and PIL (validation) decode without plugins,
# all of which Ultralytics trains on. Anything else in images/ is reported by the validator rather than skipped.
IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
# Rounding labels to 6 decimals can push an edge a hair past 0 or 1; a wider tolerance would hide real mistakes.
BOX_TOLERANCE = 1e-6
SPLITS = ("train", "val", "test")


class LabelError(ValueError):
    """A label line that is not a valid `class cx cy w h` row; the message says what is wrong with it."""


@dataclass(frozen=True)
class Label:
    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def xyxy(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box in pixels of a `width` x `height` image."""
        return (
            (self.cx - self.w / 2) * width,
            (self.cy - self.h / 2) * height,
            (self.cx + self.w / 2) * width,
            (self.cy + self.h / 2) * height,
        )

    def line(self) -> str:
        return f"{self.cls} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def list_split_images(root: Path, split: str) -> list[Path]:
    """The image files of `root/images/<split>`, sorted; [] when the folder is missing."""
    folder = Path(root) / "images" / split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image(p))


def label_path(root: Path, split: str, image: Path) -> Path:
    return Path(root) / "labels" / split / f"{image.stem}.txt"


def parse_label_line(line: str, num_classes: int | None = None) -> Label:
    """One label line -> Label; LabelError saying what is wrong otherwise."""
    fields = line.split()
    if len(fields) != 5:
        raise LabelError(f"expected 5 fields 'class cx cy w h', got {len(fields)}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise LabelError(f"class id {fields[0]!r} is not an integer") from None
    if cls < 0 or (num_classes is not None and cls >= num_classes):
        bound = "" if num_classes is None else f" [0, {num_classes})"
        raise LabelError(f"class id {cls} out of range{bound}")
    try:
        cx, cy, w, h = (float(v) for v in fields[1:])
    except ValueError:
        raise LabelError(f"non-numeric box value in {' '.join(fields[1:])!r}") from None
    if not all(math.isfinite(v) for v in (cx, cy, w, h)):
        raise LabelError(f"non-finite box value in {' '.join(fields[1:])!r}")
    if w <= 0 or h <= 0:
        raise LabelError(f"box width and height must be positive, got w={w} h={h}")
    lo, hi = -BOX_TOLERANCE, 1 + BOX_TOLERANCE
    if not (lo <= cx - w / 2 and cx + w / 2 <= hi and lo <= cy - h / 2 and cy + h / 2 <= hi):
        raise LabelError(f"box (cx={cx}, cy={cy}, w={w}, h={h}) extends outside the image [0, 1]")
    return Label(cls, cx, cy, w, h)


def read_label_file(path: Path, num_classes: int | None = None) -> tuple[list[Label], list[tuple[int, str]]]:
    """Every valid label of a file, and `(line number, message)` for every invalid line. A missing file is an image
    without objects. OSError/UnicodeDecodeError propagate: the caller decides how to report an unreadable file."""
    if not path.is_file():
        return [], []
    labels: list[Label] = []
    problems: list[tuple[int, str]] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            labels.append(parse_label_line(line, num_classes))
        except LabelError as exc:
            problems.append((n, str(exc)))
    return labels, problems


def labels_to_arrays(
    labels: Iterable[Label], width: int, height: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """`(m, 4)` xyxy pixel boxes and `(m,)` class ids. Exact duplicate rows are dropped, as Ultralytics' loader does,
    so object counts agree with its validator."""
    unique = list(dict.fromkeys(labels))
    if not unique:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    boxes = np.asarray([lb.xyxy(width, height) for lb in unique], dtype=np.float32)
    return boxes, np.asarray([lb.cls for lb in unique], dtype=np.int64)


def write_label_file(path: Path, labels: Iterable[Label]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{lb.line()}\n" for lb in labels)
    path.write_text(text)


def write_data_yaml(
    dest: Path, names: Mapping[int, str], splits: Iterable[str], dataset_root: Path | None = None
) -> Path:
    """Write an Ultralytics data.yaml at `dest`.

    Without `dataset_root` there is deliberately no `path:` key: Ultralytics then resolves the splits relative to
    the file's folder, so a dataset keeps working when moved, cloned or dvc-pulled. With it (a temporary file for
    training or validation elsewhere), `path:` is that folder, absolute.
    """
    data: dict[str, object] = {}
    if dataset_root is not None:
        data["path"] = str(Path(dataset_root).resolve())
    data |= {s: f"images/{s}" for s in splits}
    data["nc"] = len(names)
    data["names"] = {int(k): str(v) for k, v in names.items()}
    header = (
        ""
        if dataset_root is not None
        else "# Written by detector.data.generator. No `path:` key on purpose: Ultralytics then resolves the\n"
        "# splits relative to this file's folder, so the dataset survives being moved or dvc-pulled.\n"
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return dest


def present_splits(root: Path) -> list[str]:
    """The splits that have an images/<split> folder, in train/val/test order."""
    return [s for s in SPLITS if (Path(root) / "images" / s).is_dir()]
