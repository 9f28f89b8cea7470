"""COCO detection JSON (https://cocodataset.org/#format-data: `images`, `annotations`, `categories`; `bbox` is
`[x, y, width, height]` in pixels from the top-left corner).

Why not a library: `supervision`'s `DetectionDataset.from_coco` keeps `iscrowd` boxes as ordinary objects, fails
with a bare KeyError on an unknown `category_id` (no annotation id), does not check boxes against the image, and
reads one file (no splits); Ultralytics' `convert_coco` maps classes as `category_id - 1` (wrong for any other
numbering) and validates nothing. The format is plain JSON, so it is read here with the standard library.

Decisions:
- Classes are the categories in ascending id order (how COCO numbers them), named by `name`.
- `iscrowd: 1` boxes are dropped and counted. A crowd box marks a region of many objects that COCO's own evaluation
  *ignores* (neither a hit nor a miss); YOLO labels have no ignore flag, and training on it as one object teaches
  the wrong box. Ultralytics' `convert_coco` skips them too.
- Splits: one file per split, the split read from the file name (`instances_val2017.json`, `val.json`) or its
  folder (Roboflow's `valid/_annotations.coco.json`). `file_name` is looked up under `--images`, then under an
  `--images` subfolder named for the split (`train2017/`), then beside the annotation file.
- `width`/`height` of each image must match the image file (after EXIF orientation); when absent the file's own
  size is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detector.data.importers.source import Source, SourceImage, check_image, pixel_box, split_of
from detector.errors import DatasetError


def annotation_files(paths: list[Path]) -> list[Path]:
    """The JSON files named (a folder stands for every *.json in it, recursively, e.g. Roboflow's split folders)."""
    if not paths:
        raise DatasetError("--annotations FILE.json is required for --format coco")
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.json"))
            if not found:
                raise DatasetError(f"--annotations {path}: no .json files in that folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"--annotations {path}: file not found")
    return files


def read_coco(images_dir: Path | None, paths: list[Path]) -> Source:
    files = annotation_files(paths)
    if images_dir is not None and not images_dir.is_dir():
        raise DatasetError(f"--images {images_dir}: folder not found")
    splits = {f: split_of(f.name) or split_of(f.parent.name, exact=True) for f in files}
    if len(files) > 1 and (None in splits.values() or len(set(splits.values())) < len(files)):
        named = ", ".join(f"{f.name} -> {splits[f] or '?'}" for f in files)
        raise DatasetError(
            f"several COCO files need one split each, spelled in the file or folder name (train/val/test): {named}"
        )
    if len(files) == 1:
        # One file: its split name only counts when it says train (val is then carved from it); a lone val or
        # test file is simply the whole dataset.
        splits = {f: s if s == "train" else None for f, s in splits.items()}
    source = Source("coco", [], [])
    categories: dict[int, str] = {}
    for path in files:
        _read_file(source, path, images_dir, splits[path], categories)
    source.classes = [categories[k] for k in sorted(categories)]
    if source.dropped.get("crowd"):
        source.notes.append(f"dropped {source.dropped['crowd']} iscrowd box(es) (COCO evaluation ignores them)")
    return source


def _load(source: Source, path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        source.problem(f"{path}:{exc.lineno}", f"invalid JSON (column {exc.colno}: {exc.msg})")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        source.problem(str(path), f"cannot read ({exc})")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        source.problem(str(path), "not a COCO detection file (no `images` list)")
        return None
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            source.problem(str(path), f"`{key}` must be a list")
            return None
    return data


def _read_categories(source: Source, path: Path, data: dict[str, Any], categories: dict[int, str]) -> set[int]:
    ids: set[int] = set()
    for i, cat in enumerate(data.get("categories", [])):
        cid, name = (cat.get("id"), cat.get("name")) if isinstance(cat, dict) else (None, None)
        if not isinstance(cid, int) or isinstance(cid, bool) or not isinstance(name, str) or not name:
            source.problem(f"{path}: categories[{i}]", "a category needs an integer `id` and a non-empty `name`")
            continue
        if cid in ids:
            source.problem(f"{path}: category id {cid}", "duplicate category id")
        elif categories.get(cid, name) != name:
            source.problem(f"{path}: category id {cid}", f"named {name!r} here but {categories[cid]!r} in another file")
        elif name in categories.values() and categories.get(cid) != name:
            other = next(k for k, v in categories.items() if v == name)
            source.problem(f"{path}: category id {cid}", f"name {name!r} is also category id {other}")
        ids.add(cid)
        categories.setdefault(cid, name)
    if not ids:
        source.problem(str(path), "no categories")
    return ids


def _image_dirs(images_dir: Path | None, ann_file: Path, split: str | None) -> list[Path]:
    """Where `file_name`s are looked up, in order (listed once per annotation file, not once per image)."""
    dirs: list[Path] = []
    if images_dir is not None:
        dirs.append(images_dir)
        if split is not None:
            dirs += sorted(d for d in images_dir.iterdir() if d.is_dir() and split_of(d.name) == split)
    return [*dirs, ann_file.parent]


def _resolve(dirs: list[Path], file_name: str) -> Path:
    candidates = [d / file_name for d in dirs]
    return next((c for c in candidates if c.is_file()), candidates[0]).resolve()


def _read_file(
    source: Source, path: Path, images_dir: Path | None, split: str | None, categories: dict[int, str]
) -> None:
    data = _load(source, path)
    if data is None:
        return
    known_categories = _read_categories(source, path, data, categories)
    dirs = _image_dirs(images_dir, path, split)
    images: dict[Any, tuple[SourceImage, tuple[int, int] | None]] = {}
    names: dict[str, Any] = {}
    for i, entry in enumerate(data["images"]):
        img_id = entry.get("id") if isinstance(entry, dict) else None
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        where = f"{path}: image id {img_id}"
        if img_id is None or isinstance(img_id, bool | float | list | dict) or not isinstance(file_name, str):
            source.problem(f"{path}: images[{i}]", "an image needs an `id` and a `file_name`")
            continue
        if img_id in images:
            source.problem(where, "duplicate image id")
            continue
        base = Path(file_name).name
        if base in names:
            source.problem(where, f"duplicate file name {base!r} (also image id {names[base]})")
            continue
        names[base] = img_id
        image_path = _resolve(dirs, file_name)
        size, error = check_image(image_path)
        if error:
            source.problem(f"{where} ({file_name!r})", error)
        elif size is not None:
            declared = (entry.get("width"), entry.get("height"))
            if declared != (None, None) and declared != size:
                source.problem(
                    f"{where} ({file_name!r})",
                    f"width/height {declared[0]}x{declared[1]} differ from the image file's {size[0]}x{size[1]}",
                )
                size = None
        image = SourceImage(image_path, base, f"{where} ({file_name!r})", split)
        images[img_id] = (image, size)
        source.images.append(image)
    ann_ids: set[Any] = set()
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            source.problem(f"{path}: annotations[{i}]", "an annotation must be an object")
            continue
        ann_id = ann.get("id", f"#{i}")
        where = f"{path}: annotation id {ann_id}"
        if ann_id in ann_ids:
            source.problem(where, "duplicate annotation id")
        ann_ids.add(ann_id)
        if ann.get("image_id") not in images:
            source.problem(where, f"unknown image_id {ann.get('image_id')!r}")
            continue
        image, size = images[ann["image_id"]]
        where += f" (image {image.name!r})"
        if ann.get("iscrowd", 0):
            source.count_dropped("crowd")
            continue
        cid = ann.get("category_id")
        if cid not in known_categories:
            source.problem(where, f"unknown category_id {cid!r}")
            continue
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        ):
            source.problem(where, f"bbox must be [x, y, width, height], got {bbox!r}")
            continue
        if size is None:  # the image itself is already reported
            continue
        x, y, w, h = (float(v) for v in bbox)
        box = pixel_box(source, where, categories[cid], (x, y, x + w, y + h), size)
        if box is not None:
            image.boxes.append(box)
