"""Tiled (sliced) inference for small objects in big images, as SAHI does it: the image is cut into overlapping
tiles, each tile is detected at the model's input size (so an 8-24 px object in a 1280 px scene is not shrunk
below what the model can see), the boxes are moved back to the image and merged across tiles; optionally the
whole image is detected too, for the large objects a tile cuts in pieces.

The tiles are views of the image (no copy); the backend letterboxes them like any image, so they run as one batch
wherever the backend batches (`Detector.predict(..., tiles=...)`, and the service's micro-batcher).

Merging: `nms` keeps the best box of each class among those overlapping by IoU above `match_threshold` (the box a
tile cut at its edge loses to the whole one from the neighbouring tile); `nmm` (SAHI's default, "greedy NMM")
merges each group overlapping by intersection-over-smaller above the threshold into their union, with the best
score, which also joins the halves of an object cut by two tiles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from detector.errors import InvalidInputError
from detector.runtime.detections import Detections
from detector.runtime.postprocess import MAX_WH, nms

Merge = Literal["nms", "nmm"]
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 of a tile in the image
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
MIN_TILE = 32  # below this a tile holds too little context to detect anything


@dataclass(frozen=True)
class Tiling:
    width: int
    height: int
    overlap: float = 0.2  # share of a tile shared with its neighbour, each way
    merge: Merge = "nms"
    match_threshold: float = 0.5  # IoU (nms) or intersection over the smaller box (nmm) that makes boxes one object
    full_image: bool = False  # also detect the whole image (large objects)

    @classmethod
    def parse(
        cls,
        tile: str,
        overlap: float = 0.2,
        merge: Merge = "nms",
        match_threshold: float = 0.5,
        full_image: bool = False,
    ) -> Tiling:
        """`tile` as `WxH` (e.g. `640x640`); InvalidInputError naming the parameter when it cannot be one."""
        found = _SIZE.match(tile)
        if found is None:
            raise InvalidInputError(f"tile: expected WIDTHxHEIGHT in pixels, e.g. 640x640 (got {tile[:40]!r})")
        width, height = int(found.group(1)), int(found.group(2))
        if min(width, height) < MIN_TILE:
            raise InvalidInputError(f"tile: each side must be at least {MIN_TILE} px (got {width}x{height})")
        if not 0 <= overlap < 1:
            raise InvalidInputError(f"overlap: must be at least 0 and less than 1 (got {overlap})")
        return cls(width, height, overlap, merge, match_threshold, full_image)

    def grid(self, width: int, height: int) -> list[Box]:
        """The tiles covering a `width` x `height` image, row by row; the last of each row and column ends at the
        image's edge. InvalidInputError when a tile is larger than the image."""
        xs, ys = self._starts(width, height)
        return [(x, y, x + self.width, y + self.height) for y in ys for x in xs]

    def count(self, width: int, height: int) -> int:
        """How many tiles `grid` would cut, without cutting them: check it first where the sizes come from a
        client, since a one-pixel step on a big image is millions of tiles (a 2000x2000 image in 32 px tiles at
        overlap 0.99: 3.9 million, 0.6 s and 0.55 GB to list)."""
        xs, ys = self._starts(width, height)
        return len(xs) * len(ys)

    def _starts(self, width: int, height: int) -> tuple[list[int], list[int]]:
        if self.width > width or self.height > height:
            raise InvalidInputError(
                f"tile: {self.width}x{self.height} is larger than the image ({width}x{height}); send a smaller tile "
                "or no tile"
            )
        return _starts(width, self.width, self.overlap), _starts(height, self.height, self.overlap)


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    step = max(1, tile - int(overlap * tile))  # SAHI's own step, so both cut an image into the same tiles
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return sorted(set(starts))


def crops(image: npt.NDArray[np.uint8], grid: Sequence[Box]) -> list[npt.NDArray[np.uint8]]:
    """The tiles of `image` (views, no copy)."""
    return [image[y1:y2, x1:x2] for x1, y1, x2, y2 in grid]


def merge_tiles(
    per_tile: Sequence[Detections],
    grid: Sequence[Box],
    tiling: Tiling,
    max_det: int,
    whole: Detections | None = None,
) -> Detections:
    """The boxes of every tile, moved to the image (plus `whole`'s, from the full-image pass), merged, best first,
    at most `max_det`."""
    parts = [
        (d.xyxy + np.array([x1, y1, x1, y1], np.float32), d.confidence, d.class_id)
        for d, (x1, y1, _, _) in zip(per_tile, grid, strict=True)
        if len(d)
    ]
    if whole is not None and len(whole):
        parts.append((whole.xyxy, whole.confidence, whole.class_id))
    names = next((d.names for d in (*per_tile, *([whole] if whole is not None else [])) if d.names), {})
    if not parts:
        return Detections.empty(names)
    xyxy = np.concatenate([p[0] for p in parts]).astype(np.float32)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32)
    classes = np.concatenate([p[2] for p in parts]).astype(np.int64)
    if tiling.merge == "nms":
        offset = (classes.astype(np.float64) * MAX_WH)[:, None]  # one pass, class-aware
        keep = nms(xyxy + offset, scores, tiling.match_threshold)[:max_det]
        return Detections(xyxy[keep], scores[keep], classes[keep], dict(names))
    return _greedy_nmm(xyxy, scores, classes, tiling.match_threshold, max_det, names)


def _greedy_nmm(
    xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int64],
    threshold: float,
    max_det: int,
    names: dict[int, str],
) -> Detections:
    """SAHI's greedy non-maximum merging: best box first, every box of its class overlapping it by intersection over
    the smaller box above `threshold` joins it (union box, best score) and is consumed."""
    order = list(np.argsort(-scores, kind="stable"))
    used = np.zeros(len(scores), bool)
    boxes, confs, ids = [], [], []
    areas = (xyxy[:, 2] - xyxy[:, 0]).clip(0) * (xyxy[:, 3] - xyxy[:, 1]).clip(0)
    for i in order:
        if used[i]:
            continue
        used[i] = True
        group = np.flatnonzero(~used & (classes == classes[i]))
        box = xyxy[i].copy()
        if group.size:
            w = (np.minimum(xyxy[i, 2], xyxy[group, 2]) - np.maximum(xyxy[i, 0], xyxy[group, 0])).clip(0)
            h = (np.minimum(xyxy[i, 3], xyxy[group, 3]) - np.maximum(xyxy[i, 1], xyxy[group, 1])).clip(0)
            ios = (w * h) / (np.minimum(areas[i], areas[group]) + 1e-9)
            joined = group[ios > threshold]
            if joined.size:
                used[joined] = True
                members = np.concatenate([[i], joined])
                box = np.array(
                    [
                        xyxy[members, 0].min(),
                        xyxy[members, 1].min(),
                        xyxy[members, 2].max(),
                        xyxy[members, 3].max(),
                    ],
                    np.float32,
                )
        boxes.append(box)
        confs.append(scores[i])
        ids.append(classes[i])
        if len(boxes) == max_det:
            break
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(confs, np.float32), np.asarray(ids, np.int64), names
    )
