"""Tiled inference without a model: the grid (covers the image, ends at its edges, refuses what cannot be cut) and
the merge across tiles (NMS keeps one box per object, NMM joins the halves of a cut one)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime.detections import Detections
from detector.runtime.tiling import Tiling, crops, merge_tiles

NAMES = {0: "circle", 1: "square"}


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    a = np.asarray(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64), NAMES)


def test_the_grid_covers_the_image_with_the_overlap_and_ends_at_its_edges() -> None:
    grid = Tiling(320, 320, overlap=0.2).grid(1000, 600)
    assert sorted({x1 for x1, *_ in grid}) == [0, 256, 512, 680]
    assert sorted({y1 for _, y1, *_ in grid}) == [0, 256, 280]
    assert all(x2 - x1 == 320 and y2 - y1 == 320 and x2 <= 1000 and y2 <= 600 for x1, y1, x2, y2 in grid)
    covered = np.zeros((600, 1000), bool)
    for x1, y1, x2, y2 in grid:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert Tiling(640, 480).grid(640, 480) == [(0, 0, 640, 480)]  # a tile the size of the image: one tile


def test_count_is_the_grids_length_without_making_it() -> None:
    for tiling, size in [
        (Tiling(320, 320, 0.2), (1000, 600)),
        (Tiling(64, 32, 0.5), (300, 77)),
        (Tiling(64, 64), (64, 64)),
    ]:
        assert tiling.count(*size) == len(tiling.grid(*size))
    # A one-pixel step on a big image: 3.6 billion tiles, counted in a moment (listing them would need terabytes).
    assert Tiling(32, 32, overlap=0.99).count(60_000, 60_000) == (60_000 - 32 + 1) ** 2
    with pytest.raises(InvalidInputError, match="larger than the image"):
        Tiling(640, 640).count(320, 240)


def test_crops_are_views_of_the_image() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    (tile,) = crops(image, [(50, 10, 150, 90)])
    tile[0, 0] = 255
    assert tile.shape == (80, 100, 3) and image[10, 50, 0] == 255


@pytest.mark.parametrize(
    ("tile", "overlap", "image", "needle"),
    [
        ("640x640", 0.2, (320, 240), "tile: 640x640 is larger than the image (320x240)"),
        ("64x64", 1.0, None, "overlap: must be at least 0 and less than 1"),
        ("64", 0.2, None, "tile: expected WIDTHxHEIGHT"),
        ("16x16", 0.2, None, "tile: each side must be at least 32 px"),
    ],
)
def test_what_cannot_be_cut_is_refused_naming_the_parameter(
    tile: str, overlap: float, image: tuple[int, int] | None, needle: str
) -> None:
    with pytest.raises(InvalidInputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        Tiling.parse(tile, overlap).grid(*(image or (1000, 1000)))


def test_nms_keeps_one_box_per_object_seen_by_two_tiles_and_every_class() -> None:
    grid = [(0, 0, 100, 100), (80, 0, 180, 100)]
    left = dets((85, 10, 95, 20, 0.9, 0), (85, 10, 95, 20, 0.6, 1))  # a circle and a square on the same spot
    right = dets((5, 10, 15, 20, 0.8, 0))  # the same circle, seen from the right tile (x + 80)
    merged = merge_tiles([left, right], grid, Tiling(100, 100, merge="nms"), max_det=10)
    assert len(merged) == 2 and sorted(merged.class_id.tolist()) == [0, 1]
    circle = merged.xyxy[merged.class_id == 0][0]
    assert circle.tolist() == [85, 10, 95, 20] and merged.confidence.max() == pytest.approx(0.9)


def test_nmm_joins_the_halves_of_an_object_cut_by_two_tiles() -> None:
    grid = [(0, 0, 100, 100), (90, 0, 190, 100)]
    left = dets((80, 40, 100, 60, 0.7, 0))  # the left half of a 40 px circle at x 80-120
    right = dets((0, 40, 30, 60, 0.8, 0))  # its right part (x 90-120), overlapping the left half by 10 px
    nmm = merge_tiles([left, right], grid, Tiling(100, 100, merge="nmm", match_threshold=0.3), max_det=10)
    assert nmm.xyxy.tolist() == [[80, 40, 120, 60]] and nmm.confidence.tolist() == pytest.approx([0.8])
    nms = merge_tiles([left, right], grid, Tiling(100, 100, merge="nms", match_threshold=0.3), max_det=10)
    assert len(nms) == 2  # IoU 0.2: NMS keeps both halves


def test_the_full_image_pass_joins_and_max_det_caps() -> None:
    grid = [(0, 0, 50, 50), (50, 0, 100, 50)]
    tiles = [dets((1, 1, 5, 5, 0.5, 0)), dets((1, 1, 5, 5, 0.4, 0))]
    whole = dets((10, 10, 90, 40, 0.95, 1))  # a large square no tile holds
    merged = merge_tiles(tiles, grid, Tiling(50, 50), max_det=2, whole=whole)
    assert merged.class_id.tolist() == [1, 0] and merged.confidence.tolist() == pytest.approx([0.95, 0.5])
    assert len(merge_tiles([Detections.empty(NAMES)] * 2, grid, Tiling(50, 50), max_det=5)) == 0
