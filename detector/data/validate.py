"""Checks that a folder is a usable YOLO detection dataset before any training time is spent on it.

Expected layout: `<root>/data.yaml` (with `names` as a dict `{0: a, 1: b}` or a list), `<root>/images/<split>/`
and `<root>/labels/<split>/<image stem>.txt`. Every problem is collected (not just the first), each naming the
file and, for label files, the line, so a broken dataset can be fixed in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from detector.data.yolo_format import IMAGE_SUFFIXES, LabelError, list_split_images, parse_label_line
from detector.errors import DatasetError

MAX_LISTED_PROBLEMS = 50


@dataclass(frozen=True)
class DatasetProblem:
    path: str  # relative to the dataset root, POSIX style
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


def load_names(root: Path) -> dict[int, str]:
    """Class names from `root/data.yaml`; raise DatasetError if the file is missing or malformed."""
    path = Path(root) / "data.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (a data.yaml with `names:` is required)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(data, dict) or data.get("names") is None:
        raise DatasetError(f"{path}: no `names:` mapping of class ids to class names")
    return _parse_names(data["names"], path)


def _parse_names(raw: Any, path: Path) -> dict[int, str]:
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{path}: `names` must be a non-empty list or a mapping {{0: name, ...}}")
    names: dict[int, str] = {}
    for key, value in raw.items():
        try:
            idx = int(key)  # YAML may give "0" for quoted keys
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: class id {key!r} in `names` is not an integer") from None
        if isinstance(key, bool | float) or value is None or isinstance(value, dict | list):
            raise DatasetError(f"{path}: bad `names` entry {key!r}: {value!r}")
        names[idx] = str(value)
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{path}: class ids in `names` must be 0..{len(names) - 1} with no gaps")
    return dict(sorted(names.items()))


def validate_dataset(
    root: Path, num_classes: int | None = None, splits: Iterable[str] = ("train", "val")
) -> list[DatasetProblem]:
    """Every problem found in the dataset at `root` (empty list: it is usable).

    `num_classes` defaults to the number of names in data.yaml; class ids must lie in [0, num_classes).
    """
    root = Path(root)
    if not root.is_dir():
        return [DatasetProblem(str(root), None, "dataset folder not found")]
    problems: list[DatasetProblem] = []
    try:
        names = load_names(root)
        if num_classes is None:
            num_classes = len(names)
    except DatasetError as exc:
        problems.append(DatasetProblem("data.yaml", None, str(exc).split(": ", 1)[-1]))
    if not (root / "images").is_dir():
        problems.append(DatasetProblem("images", None, "missing images/ folder"))
        return problems
    for split in splits:
        problems += _check_split(root, split, num_classes)
    return problems


def check_dataset(
    root: Path, num_classes: int | None = None, splits: Iterable[str] = ("train", "val")
) -> dict[int, str]:
    """Return the class names if the dataset is valid; otherwise raise DatasetError listing every problem."""
    problems = validate_dataset(root, num_classes, splits)
    if problems:
        shown = [f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            shown.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        raise DatasetError(f"dataset {root} has {len(problems)} problem(s):\n" + "\n".join(shown))
    return load_names(root)


def _check_split(root: Path, split: str, num_classes: int | None) -> list[DatasetProblem]:
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    if not img_dir.is_dir():
        return [DatasetProblem(f"images/{split}", None, f"missing split folder for '{split}'")]
    images = list_split_images(root, split)
    problems: list[DatasetProblem] = []
    for other in sorted(p for p in img_dir.iterdir() if p.is_file() and p not in images and p.name[0] != "."):
        problems.append(
            DatasetProblem(
                f"images/{split}/{other.name}",
                None,
                f"not an image this project reads (use one of {', '.join(sorted(IMAGE_SUFFIXES))})",
            )
        )
    if not images:
        problems.append(DatasetProblem(f"images/{split}", None, f"split '{split}' has no images"))
    for img in images:
        error = image_error(img)
        if error:
            problems.append(DatasetProblem(f"images/{split}/{img.name}", None, error))
    labels = sorted(lbl_dir.glob("*.txt")) if lbl_dir.is_dir() else []
    if images and not labels:
        # Background-only images are fine one by one, but a split with no labels at all is a mistake.
        problems.append(DatasetProblem(f"labels/{split}", None, f"split '{split}' has no label files"))
    stems = {p.stem for p in images}
    for lbl in labels:
        rel = f"labels/{split}/{lbl.name}"
        if lbl.stem not in stems:
            problems.append(DatasetProblem(rel, None, f"label file without a matching image in images/{split}/"))
        problems += _check_label_file(lbl, rel, num_classes)
    return problems


def image_error(path: Path) -> str | None:
    """Why the image file cannot be used, or None. `verify()` catches corrupt headers, `load()` truncated data."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "image has zero size"
    except Exception as exc:  # any decoder failure means unusable (Ultralytics patches Image.open, too)
        return f"unreadable or corrupt image ({type(exc).__name__}: {exc})"
    # PIL decodes a truncated JPEG without complaint when ImageFile.LOAD_TRUNCATED_IMAGES is set (some
    # libraries set it globally), so also check for the end-of-image marker, as Ultralytics does.
    if path.suffix.lower() in {".jpg", ".jpeg"}:
        with path.open("rb") as f:
            f.seek(-2, 2)
            if f.read() != b"\xff\xd9":
                return "truncated JPEG (no end-of-image marker)"
    return None


def _check_label_file(path: Path, rel: str, num_classes: int | None) -> list[DatasetProblem]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return [DatasetProblem(rel, None, f"cannot read label file ({exc})")]
    problems = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                parse_label_line(line, num_classes)
            except LabelError as exc:
                problems.append(DatasetProblem(rel, n, str(exc)))
    return problems
