"""The `small` preset (8-24 px objects in 1280 px scenes) and `detector data tile`: tiles on the inference grid,
labels clipped to them, every object whole in at least one tile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detector.config import DataConfig
from detector.data import generate_dataset, validate_dataset
from detector.data.tiles import tile_dataset, tile_labels
from detector.data.yolo_format import Label, read_label_file
from detector.runtime.tiling import Tiling

TILING = Tiling(256, 256, 0.2)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = DataConfig.model_validate(
        {"version": "small", "imgsz": 128, "splits": {"train": 40, "val": 20, "test": 0}}
    )
    return generate_dataset(config, tmp_path_factory.mktemp("gen") / "small").root


def _boxes(path: Path, width: int, height: int, dx: float = 0, dy: float = 0) -> list[tuple[int, tuple[float, ...]]]:
    labels, problems = read_label_file(path)
    assert not problems
    return [
        (lb.cls, tuple(v + d for v, d in zip(lb.xyxy(width, height), (dx, dy, dx, dy), strict=True))) for lb in labels
    ]


def test_small_scenes_are_1280_px_with_8_to_24_px_objects_whatever_imgsz_says(small: Path) -> None:
    manifest = json.loads((small / "manifest.json").read_text())
    assert manifest["imgsz"] == 1280 and manifest["counts"] == {"train": 2, "val": 1, "test": 0}  # 5 % of 40/20/0
    assert validate_dataset(small) == []
    sides = [
        max(b[2] - b[0], b[3] - b[1])
        for label in sorted((small / "labels").rglob("*.txt"))
        for _, b in _boxes(label, 1280, 1280)
    ]
    assert len(sides) >= 60  # 20-60 objects per scene
    assert min(sides) >= 7 and max(sides) <= 26  # 8-24 px shapes (a triangle's or circle's box: a pixel either way)


def test_labels_are_clipped_to_the_tile_and_slivers_dropped() -> None:
    # A 20x20 box at (90, 40) in a 1000x500 image, cut by a tile ending at x=100: half of it is inside.
    label = Label(0, 100 / 1000, 50 / 500, 20 / 1000, 20 / 500)
    tile = (0, 0, 100, 100)
    (kept,) = tile_labels([label], 1000, 500, tile, min_visible=0.5)
    assert kept.xyxy(100, 100) == pytest.approx((90, 40, 100, 60))
    assert tile_labels([label], 1000, 500, tile, min_visible=0.6) == []
    assert tile_labels([label], 1000, 500, (200, 0, 300, 100), min_visible=0.1) == []  # elsewhere


def test_tiles_follow_the_inference_grid_and_hold_every_object_whole(small: Path, tmp_path: Path) -> None:
    summary = tile_dataset(small, tmp_path / "small-tiles", TILING)
    grid = TILING.grid(1280, 1280)
    assert summary.tiles == {"train": 2 * len(grid), "val": len(grid)}
    assert validate_dataset(summary.root) == []
    manifest = json.loads((summary.root / "manifest.json").read_text())
    assert manifest["tile"] == [256, 256] and manifest["tiled_from"]["sha256"]
    for split in ("train", "val"):
        for scene in sorted((small / "labels" / split).glob("*.txt")):
            tiled: list[tuple[int, tuple[float, ...]]] = []
            for x1, y1, _, _ in grid:
                tile_label = summary.root / "labels" / split / f"{scene.stem}_{x1}_{y1}.txt"
                tiled += _boxes(tile_label, 256, 256, x1, y1)
            # Overlap 0.2 of 256 px (51 px) is wider than any object: each lies whole in some tile.
            for cls, box in _boxes(scene, 1280, 1280):
                assert any(c == cls and np.allclose(b, box, atol=0.01) for c, b in tiled), (scene.name, box)
