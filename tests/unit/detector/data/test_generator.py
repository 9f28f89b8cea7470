"""The bundled generator: determinism, layout, label correctness, v1/v2 differences, atomic replacement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detector.config import DataConfig
from detector.data import VERSIONS, dataset_hash, generate_dataset, validate_dataset
from detector.errors import DatasetError
from tests.matching import iou

IMGSZ = 128


def config(version: str = "v1", seed: int = 0, train: int = 12, val: int = 6, test: int = 3) -> DataConfig:
    return DataConfig.model_validate(
        {"version": version, "seed": seed, "imgsz": IMGSZ, "splits": {"train": train, "val": val, "test": test}}
    )


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_labels(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2).reshape(-1, 5)


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(config("v1"), tmp_path_factory.mktemp("gen") / "v1").root


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(config("v2"), tmp_path_factory.mktemp("gen") / "v2").root


def test_versions_and_unknown_version(tmp_path: Path) -> None:
    assert VERSIONS == ("v1", "v2", "small")
    with pytest.raises(DatasetError, match=r"unknown dataset version 'v9'.*v1, v2, small"):
        generate_dataset(config("v9"), tmp_path / "v9")
    assert not (tmp_path / "v9").exists()


def test_layout_data_yaml_and_manifest(v1: Path) -> None:
    for split, n in {"train": 12, "val": 6, "test": 3}.items():
        assert len(list((v1 / "images" / split).glob("*.jpg"))) == n
        assert len(list((v1 / "labels" / split).glob("*.txt"))) == n
    data = yaml.safe_load((v1 / "data.yaml").read_text())
    assert "path" not in data  # resolved relative to data.yaml by Ultralytics; see the generator docstring
    assert data["names"] == {0: "circle", 1: "square", 2: "triangle"}
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/val", "images/test")
    manifest = json.loads((v1 / "manifest.json").read_text())
    assert manifest["sha256"] == dataset_hash(v1)
    assert manifest["counts"] == {"train": 12, "val": 6, "test": 3}
    n_train_objects = sum(len(read_labels(p)) for p in (v1 / "labels" / "train").glob("*.txt"))
    assert sum(manifest["objects_per_class"]["train"].values()) == n_train_objects
    img = cv2.imread(str(v1 / "images" / "train" / "img_00000.jpg"))
    assert img.shape == (IMGSZ, IMGSZ, 3)


def test_summary_matches_files(tmp_path: Path) -> None:
    summary = generate_dataset(config("v2", test=0), tmp_path / "d")
    assert summary.root == tmp_path / "d"
    assert summary.counts == {"train": 12, "val": 6, "test": 0}
    assert summary.sha256 == dataset_hash(summary.root)
    assert len(summary.names) == 5
    assert not (summary.root / "images" / "test").exists()  # an empty split gets no folder and no yaml key
    assert "test" not in yaml.safe_load((summary.root / "data.yaml").read_text())


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path, v1: Path) -> None:
    again = generate_dataset(config("v1"), tmp_path / "again").root
    assert files(again) == files(v1)
    other = generate_dataset(config("v1", seed=1), tmp_path / "other").root
    assert files(other)["images/train/img_00000.jpg"] != files(v1)["images/train/img_00000.jpg"]
    assert dataset_hash(other) != dataset_hash(v1)


def test_train_count_does_not_change_other_images(tmp_path: Path, v1: Path) -> None:
    fewer = files(generate_dataset(config("v1", train=5), tmp_path / "fewer").root)
    full = files(v1)
    images_and_labels = [n for n in fewer if n.startswith(("images/", "labels/"))]
    assert len(images_and_labels) == 2 * (5 + 6 + 3)
    for name in images_and_labels:  # val, test and the first 5 train images are unchanged
        assert fewer[name] == full[name], name


def test_generated_datasets_pass_the_validator(v1: Path, v2: Path) -> None:
    assert validate_dataset(v1, splits=("train", "val", "test")) == []
    assert validate_dataset(v2, splits=("train", "val", "test")) == []


def _label_stats(root: Path) -> tuple[set[int], float, float]:
    """(classes used, mean objects per image, mean std of the pixels outside every box)."""
    classes: set[int] = set()
    counts, stds = [], []
    for lbl in sorted((root / "labels" / "train").glob("*.txt")):
        img = cv2.imread(str(root / "images" / "train" / f"{lbl.stem}.jpg")).astype(np.float32)
        rows = read_labels(lbl)
        outside = np.ones(img.shape[:2], bool)
        for c, cx, cy, w, h in rows:
            classes.add(int(c))
            x0, y0 = int((cx - w / 2) * IMGSZ), int((cy - h / 2) * IMGSZ)
            outside[y0 : int(np.ceil((cy + h / 2) * IMGSZ)), x0 : int(np.ceil((cx + w / 2) * IMGSZ))] = False
        counts.append(len(rows))
        if outside.sum() > 100:
            # Local texture, not the slow gradient: std of the difference between neighbouring pixels.
            diff = np.abs(np.diff(img, axis=1)).max(axis=2)
            stds.append(float(diff[outside[:, 1:] & outside[:, :-1]].mean()))
    return classes, float(np.mean(counts)), float(np.mean(stds))


def test_v2_is_harder_than_v1(v1: Path, v2: Path) -> None:
    classes1, objects1, texture1 = _label_stats(v1)
    classes2, objects2, texture2 = _label_stats(v2)
    assert classes1 <= {0, 1, 2} and len(classes1) == 3
    assert classes2 <= set(range(5)) and len(classes2) >= 4
    assert objects2 > objects1
    assert texture2 > 3 * texture1


def test_v2_allows_occlusion_but_v1_never_overlaps(v1: Path, v2: Path) -> None:
    def max_iou(root: Path) -> float:
        best = 0.0
        for lbl in (root / "labels" / "train").glob("*.txt"):
            boxes = read_labels(lbl)[:, 1:]
            xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
            pairs = iou(xyxy, xyxy)
            np.fill_diagonal(pairs, 0.0)  # each box with every other box, not with itself
            best = max(best, float(pairs.max(initial=0.0)))
        return best

    assert max_iou(v1) == 0.0
    assert max_iou(v2) > 0.0


def test_v1_boxes_are_tight(v1: Path) -> None:
    """Each box edge touches the shape (within 1 px) and the band just outside the box is background."""
    checked = 0
    for lbl in sorted((v1 / "labels" / "train").glob("*.txt")):
        img = cv2.imread(str(v1 / "images" / "train" / f"{lbl.stem}.jpg")).astype(np.int32)
        rows = read_labels(lbl)[:, 1:] * IMGSZ
        boxes = [(round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2)) for cx, cy, w, h in rows]
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            assert min(x1 - x0, y1 - y0) >= 0.1 * IMGSZ  # v1 objects are never tiny
            # Per side: the two innermost lines, and the lines 2 and 3 px outside, as (x0, y0, x1, y1) slices.
            sides = [
                [(x0 + d, y0, x0 + d + 1, y1) for d in (0, 1, -2, -3)],
                [(x1 - 1 - d, y0, x1 - d, y1) for d in (0, 1, -2, -3)],
                [(x0, y0 + d, x1, y0 + d + 1) for d in (0, 1, -2, -3)],
                [(x0, y1 - 1 - d, x1, y1 - d) for d in (0, 1, -2, -3)],
            ]
            for side in sides:
                outer = side[3]
                if min(outer[:2]) < 0 or max(outer[2:]) > IMGSZ:
                    continue  # the box touches the image border on this side
                if any(_overlaps(outer, (b[0] - 2, b[1] - 2, b[2] + 2, b[3] + 2)) for b in boxes[:k] + boxes[k + 1 :]):
                    continue  # a neighbour (>= 2 px away, plus its anti-aliased edge) is in the way
                inner, inner2, out2, out3 = (img[b:d, a:c].reshape(-1, 3) for a, b, c, d in side)
                contrast = max(np.abs(inner - out2).max(), np.abs(inner2 - out2).max())
                assert contrast > 40, "a box edge does not touch its shape (box too loose)"
                assert np.abs(out2 - out3).max() < 35, "the shape extends past its box"  # 35: JPEG ringing
                checked += 1
    assert checked > 20


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_generation_replaces_an_existing_dataset_atomically(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    generate_dataset(config("v1", train=6), out)
    (out / "images" / "train" / "stale.jpg").write_bytes(b"old")
    summary = generate_dataset(config("v1", train=4), out)
    assert not (out / "images" / "train" / "stale.jpg").exists()
    assert len(list((out / "images" / "train").glob("*.jpg"))) == 4
    assert summary.sha256 == dataset_hash(out)
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temporary folders left behind


def test_failed_generation_leaves_the_previous_dataset(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    before = files(generate_dataset(config("v1", train=4), out).root)
    # A config that skipped validation makes the generator crash after it created its temporary folder.
    broken = config("v1", train=8).model_copy(update={"seed": "not-a-number"})
    with pytest.raises(TypeError):
        generate_dataset(broken, out)
    assert files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]


def test_ultralytics_resolves_a_moved_dataset(tmp_path: Path, v1: Path) -> None:
    utils = pytest.importorskip("ultralytics.data.utils")
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(v1, moved)
    data = utils.check_det_dataset(str(moved / "data.yaml"))
    assert Path(data["train"]) == (moved / "images" / "train").resolve()
    assert Path(data["val"]) == (moved / "images" / "val").resolve()
    assert data["names"] == {0: "circle", 1: "square", 2: "triangle"}
