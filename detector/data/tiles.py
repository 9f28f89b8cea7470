"""Cut a YOLO dataset of big scenes into the tiles a small-object model trains on (`detector data tile`).

A model that detects 8-24 px objects in 1280 px scenes tile by tile (`Detector.predict(..., tiles=...)`) should
learn from what it will be shown: tiles cut the same way, at their own resolution. The tiles here are exactly the
inference grid (`Tiling.grid`, SAHI's step), so training and serving agree on where tiles start. Each object goes
to every tile that holds at least `min_visible` of its box, clipped to the tile (a sliver cut by the tile's edge
is no object to learn: it is dropped, as SAHI's slicing utility drops it by the same rule); tiles with no object
are kept as negatives. Every split is tiled, so val and test measure the model on tiles too; the recall gain on
whole scenes is measured by `python -m benchmarks.tiles --scenes-from data/small`.

Output: a YOLO dataset (`data.yaml`, `images/<split>/<scene>_<x>_<y>.jpg`, labels) with a `manifest.json` naming
the source, its hash, the tile size and overlap, written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.data.hashing import dataset_hash
from detector.data.validate import load_names
from detector.data.yolo_format import (
    Label,
    label_path,
    list_split_images,
    present_splits,
    read_label_file,
    write_data_yaml,
    write_label_file,
)
from detector.errors import DatasetError
from detector.files import replace_dir, staging_dir
from detector.runtime.tiling import Tiling

_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


@dataclass(frozen=True)
class TileSummary:
    root: Path
    tiles: dict[str, int]  # split -> tiles written
    objects: dict[str, int]  # split -> labelled objects in them
    sha256: str


def tile_labels(
    labels: list[Label], width: int, height: int, tile: tuple[int, int, int, int], min_visible: float
) -> list[Label]:
    """`labels` of a `width` x `height` image, as labels of the `tile` (x1, y1, x2, y2) crop: clipped to it, and
    only those keeping at least `min_visible` of their box's area."""
    tx1, ty1, tx2, ty2 = tile
    tw, th = tx2 - tx1, ty2 - ty1
    out = []
    for label in labels:
        x1, y1, x2, y2 = label.xyxy(width, height)
        area = (x2 - x1) * (y2 - y1)
        cx1, cy1, cx2, cy2 = max(x1, tx1), max(y1, ty1), min(x2, tx2), min(y2, ty2)
        # 1e-6: boxes come from 6-decimal label text, so "exactly half" must not fail on the last bit
        if cx2 <= cx1 or cy2 <= cy1 or area <= 0 or (cx2 - cx1) * (cy2 - cy1) < min_visible * area * (1 - 1e-6):
            continue
        out.append(
            Label(
                label.cls,
                ((cx1 + cx2) / 2 - tx1) / tw,
                ((cy1 + cy2) / 2 - ty1) / th,
                (cx2 - cx1) / tw,
                (cy2 - cy1) / th,
            )
        )
    return out


def tile_dataset(source: Path, out: Path, tiling: Tiling, min_visible: float = 0.5) -> TileSummary:
    """Every split of `source` cut into `tiling`'s tiles, written as a YOLO dataset at `out` (replaced)."""
    source, out = Path(source), Path(out)
    names = load_names(source)
    splits = present_splits(source)
    if not splits:
        raise DatasetError(f"{source}: no images/<split> folders to tile")
    tmp = staging_dir(out)  # a hidden sibling: the final rename is atomic
    tiles: dict[str, int] = {}
    objects: dict[str, int] = {}
    try:
        for split in splits:
            tiles[split] = objects[split] = 0
            for image_path in list_split_images(source, split):
                image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
                if image is None:
                    raise DatasetError(f"{image_path}: not an image OpenCV can read")
                height, width = image.shape[:2]
                labels, problems = read_label_file(label_path(source, split, image_path), len(names))
                if problems:
                    line, why = problems[0]
                    raise DatasetError(f"{label_path(source, split, image_path)}:{line}: {why}")
                for box in tiling.grid(width, height):
                    x1, y1, x2, y2 = box
                    name = f"{image_path.stem}_{x1}_{y1}"
                    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(image[y1:y2, x1:x2]), _JPEG)
                    if not ok:  # pragma: no cover - only on a broken OpenCV build
                        raise DatasetError("OpenCV failed to encode a JPEG")
                    (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
                    (tmp / "images" / split / f"{name}.jpg").write_bytes(buffer.tobytes())
                    kept = tile_labels(labels, width, height, box, min_visible)
                    write_label_file(tmp / "labels" / split / f"{name}.txt", kept)
                    tiles[split] += 1
                    objects[split] += len(kept)
        write_data_yaml(tmp / "data.yaml", names, splits)
        digest = dataset_hash(tmp)
        manifest = {
            "version": out.name,
            "tiled_from": {"dataset": str(source), "sha256": dataset_hash(source)},
            "tile": [tiling.width, tiling.height],
            "overlap": tiling.overlap,
            "min_visible": min_visible,
            "names": {str(k): v for k, v in names.items()},
            "tiles": tiles,
            "objects": objects,
            "sha256": digest,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TileSummary(out, tiles, objects, digest)
