"""What every format reader produces: the source's images, their boxes (normalised), classes and splits, plus every
problem found on the way, each naming the file and the line or annotation id."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from detector.data.validate import MAX_LISTED_PROBLEMS, image_error
from detector.data.yolo_format import IMAGE_SUFFIXES
from detector.errors import DatasetError

# How far (in pixels) a COCO/VOC box may stick out of its image and still count as inside; such boxes are clipped to
# the image. Labelling tools round coordinates and write an edge at W + 0.0001 or -0.3; anything further out is a
# real mistake and is reported.
PIXEL_TOLERANCE = 0.5
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
# Split names as labelling tools spell them (Roboflow: "valid"; COCO: "instances_train2017"; VOC: "train.txt").
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_SPLIT_TOKEN = re.compile(r"(?<![a-z])(" + "|".join(sorted(_SPLIT_ALIASES, key=len, reverse=True)) + r")(?![a-z])")


@dataclass(frozen=True)
class SourceBox:
    """One object: its class name in the source and its box normalised to [0, 1] (centre x/y, width, height)."""

    cls: str
    cx: float
    cy: float
    w: float
    h: float


@dataclass
class SourceImage:
    path: Path  # the image file in the source (resolved)
    name: str  # file name in the imported dataset (the source's base name)
    where: str  # how problems name this image: "train.json: image id 7" / "Annotations/a.xml"
    split: str | None  # the source's split, or None when the source has none
    boxes: list[SourceBox] = field(default_factory=list)


@dataclass
class Source:
    """A parsed source. `classes` are the source's class names in its own order."""

    format: str
    images: list[SourceImage]
    classes: list[str]
    problems: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # e.g. {"crowd": 3, "difficult": 5}
    notes: list[str] = field(default_factory=list)  # what the reader decided, for the report

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def count_dropped(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def raise_if_problems(problems: list[str], what: str) -> None:
    """DatasetError listing every problem (up to MAX_LISTED_PROBLEMS, then a count)."""
    if not problems:
        return
    shown = [f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        shown.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    raise DatasetError(f"{what} has {len(problems)} problem(s); nothing was imported:\n" + "\n".join(shown))


def split_of(name: str, exact: bool = False) -> str | None:
    """The split a file or folder name spells ("instances_val2017.json" -> "val", "valid" -> "val"), or None.
    `exact`: the whole name must be a split name (for folders above the dataset, such as `test_project/`)."""
    if exact:
        return _SPLIT_ALIASES.get(name.lower())
    found = {_SPLIT_ALIASES[m] for m in _SPLIT_TOKEN.findall(Path(name).stem.lower())}
    return found.pop() if len(found) == 1 else None


def check_image(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """`((width, height), None)` for a usable image, `(None, why)` otherwise.

    The size is the one after EXIF orientation: Ultralytics (and cv2.imread) train on the rotated image, so labels
    must be normalised by its width and height."""
    if not path.is_file():
        return None, f"image file not found: {path}"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None, f"{path.name}: not an image this project reads (use one of {', '.join(sorted(IMAGE_SUFFIXES))})"
    error = image_error(path)
    if error:
        return None, f"{path.name}: {error}"
    with Image.open(path) as im:
        width, height = im.size
        orientation = im.getexif().get(_EXIF_ORIENTATION)
    return ((height, width) if orientation in _SWAPS_AXES else (width, height)), None


def pixel_box(
    source: Source,
    where: str,
    cls: str,
    xyxy: tuple[float, float, float, float],
    size: tuple[int, int],
    shown: str | None = None,
) -> SourceBox | None:
    """A box given in continuous pixel coordinates from the image's top-left corner (x0, y0, x1, y1) of a `size` =
    (width, height) image -> normalised SourceBox, or None after reporting why it is unusable: not finite, zero
    area, or outside the image by more than PIXEL_TOLERANCE. `shown`: the box as the source wrote it, for messages
    (default: x0, y0, x1, y1)."""
    x0, y0, x1, y1 = xyxy
    width, height = size
    if not all(math.isfinite(v) for v in xyxy):
        source.problem(where, f"box {list(xyxy)} has a non-finite coordinate")
        return None
    shown = shown or f"x0={x0}, y0={y0}, x1={x1}, y1={y1}"
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        source.problem(where, f"zero-area box ({shown})")
        return None
    tol = PIXEL_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        source.problem(where, f"box ({shown}) lies outside the {width}x{height} image")
        return None
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if x1 - x0 <= 0 or y1 - y0 <= 0:  # only the clipping made it empty (a sliver along an edge)
        source.problem(where, "box has zero area inside the image")
        return None
    return SourceBox(cls, (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def require_dir(path: Path | None, flag: str) -> Path:
    if path is None:
        raise DatasetError(f"{flag} DIR is required for this format")
    if not path.is_dir():
        raise DatasetError(f"{flag} {path}: folder not found")
    return path
