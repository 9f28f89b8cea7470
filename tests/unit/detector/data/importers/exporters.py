"""Test helpers: a small generated v1, and writers of its labels as COCO JSON and Pascal VOC XML, following the
published schemas (COCO: https://cocodataset.org/#format-data, `bbox` = [x, y, w, h] in 0-based continuous pixels;
VOC: the VOC2012 devkit's annotation files, `bndbox` corners as 1-based inclusive pixel indices)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from detector.config import DataConfig
from detector.data import generate_dataset, load_names
from detector.data.yolo_format import SPLITS, Label, list_split_images, read_label_file

COCO_FIRST_ID = 1  # COCO numbers categories from 1; the importer must not assume 0-based ids


def small_v1(out: Path, train: int = 20, val: int = 8, test: int = 4, imgsz: int = 96) -> Path:
    cfg = DataConfig.model_validate(
        {"version": "v1", "imgsz": imgsz, "splits": {"train": train, "val": val, "test": test}}
    )
    return generate_dataset(cfg, out).root


def labels_of(root: Path, split: str, stem: str) -> np.ndarray:
    labels, problems = read_label_file(root / "labels" / split / f"{stem}.txt")
    assert not problems
    return np.array([[lb.cls, lb.cx, lb.cy, lb.w, lb.h] for lb in labels], dtype=np.float64).reshape(-1, 5)


def _pixels(lb: Label, w: int, h: int) -> tuple[float, float, float, float]:
    return lb.xyxy(w, h)


def coco_dict(root: Path, split: str, names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or load_names(root)
    images, annotations = [], []
    for i, path in enumerate(list_split_images(root, split), start=1):
        with Image.open(path) as im:
            w, h = im.size
        images.append({"id": i, "file_name": path.name, "width": w, "height": h, "license": 1})
        labels, _ = read_label_file(root / "labels" / split / f"{path.stem}.txt")
        for lb in labels:
            x0, y0, x1, y1 = _pixels(lb, w, h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": lb.cls + COCO_FIRST_ID,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "segmentation": [],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "exported by the tests", "version": "1.0"},
        "licenses": [{"id": 1, "name": "test", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + COCO_FIRST_ID, "name": v, "supercategory": "shape"} for k, v in names.items()],
    }


def export_coco(root: Path, out: Path) -> dict[str, Path]:
    """One `instances_<split>.json` per split in `out`; file names relative to images/<split>/."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in SPLITS:
        if (root / "images" / split).is_dir():
            files[split] = out / f"instances_{split}.json"
            files[split].write_text(json.dumps(coco_dict(root, split), indent=1))
    return files


def voc_xml(file_name: str, size: tuple[int, int], objects: list[tuple[str, tuple[float, ...], int]]) -> str:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "VOC2012"
    ET.SubElement(ann, "filename").text = file_name
    src = ET.SubElement(ann, "source")
    ET.SubElement(src, "database").text = "tests"
    sz = ET.SubElement(ann, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3), strict=True):
        ET.SubElement(sz, tag).text = str(value)
    ET.SubElement(ann, "segmented").text = "0"
    for name, box, difficult in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(difficult)
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = f"{v:g}"
    ET.indent(ann)
    return ET.tostring(ann, encoding="unicode") + "\n"


def voc_bndbox(xyxy: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """Continuous pixel corners (x0, y0, x1, y1) -> the devkit's integer `bndbox`: the first and the last pixel the
    box covers, counted from 1 (pixel i spans [i - 1, i]), so a whole-image box is (1, 1, W, H)."""
    x0, y0, x1, y1 = (round(v) for v in xyxy)
    return x0 + 1, y0 + 1, x1, y1


def export_voc(root: Path, out: Path, image_sets: bool = True) -> Path:
    """VOC layout in `out`: JPEGImages/<split>_<name>, Annotations/<split>_<stem>.xml, ImageSets/Main/<split>.txt
    (VOC ids are unique across splits, so the split is part of the id). Integer 1-based pixel indices, as VOC2012."""
    names = load_names(root)
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        ids = []
        for path in list_split_images(root, split):
            vid = f"{split}_{path.stem}"
            ids.append(vid)
            shutil.copyfile(path, out / "JPEGImages" / f"{vid}{path.suffix}")
            with Image.open(path) as im:
                w, h = im.size
            labels, _ = read_label_file(root / "labels" / split / f"{path.stem}.txt")
            objects = [(names[lb.cls], voc_bndbox(_pixels(lb, w, h)), 0) for lb in labels]
            (out / "Annotations" / f"{vid}.xml").write_text(voc_xml(f"{vid}{path.suffix}", (w, h), objects))
        if image_sets and ids:
            (out / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return out
