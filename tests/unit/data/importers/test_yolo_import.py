"""YOLO folders -> data/<version>: the project's own layout (byte-identical round trip), Roboflow's, a flat one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from detector.data import dataset_hash
from detector.data.importers import ImportRequest, import_dataset
from detector.errors import DatasetError


def _import(src: Path, root: Path, **kw: Any) -> dict[str, Any]:
    return import_dataset(ImportRequest("yolo", "mine", root=root, source=src, **kw))


def test_round_trip_is_byte_identical(v1: Path, tmp_path: Path) -> None:
    report = _import(v1, tmp_path / "data")
    out = tmp_path / "data" / "mine"
    # Same images, labels and data.yaml as the generator wrote: the content hash is the generator's own.
    assert report["sha256"] == dataset_hash(out) == json.loads((v1 / "manifest.json").read_text())["sha256"]
    assert report["splits"]["from"] == "source"


def test_roboflow_layout_and_valid_alias(v1: Path, tmp_path: Path) -> None:
    src = tmp_path / "rf"
    for split, alias in (("train", "train"), ("val", "valid")):
        shutil.copytree(v1 / "images" / split, src / alias / "images")
        shutil.copytree(v1 / "labels" / split, src / alias / "labels")
    (src / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 3\nnames: ['circle', 'square', 'triangle']\n"
    )
    report = _import(src, tmp_path / "data")
    assert report["counts"] == {"train": 20, "val": 8, "test": 0}
    assert (tmp_path / "data/mine/labels/val/img_00000.txt").read_bytes() == (
        v1 / "labels/val/img_00000.txt"
    ).read_bytes()


def test_flat_layout_with_classes_txt_negatives_and_selection(v1: Path, tmp_path: Path) -> None:
    src = tmp_path / "flat"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for split in ("train", "val"):
        for img in sorted((v1 / "images" / split).glob("*.jpg")):
            shutil.copyfile(img, src / "images" / f"{split}_{img.name}")
            shutil.copyfile(v1 / "labels" / split / f"{img.stem}.txt", src / "labels" / f"{split}_{img.stem}.txt")
    (src / "labels" / "train_img_00003.txt").unlink()  # no label file: a negative
    (src / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    report = _import(src, tmp_path / "data", classes="square,circle")
    assert report["splits"]["from"] == "made" and sum(report["counts"].values()) == 28
    assert report["names"] == {"0": "square", "1": "circle"}
    out = tmp_path / "data" / "mine"
    label = next(out.glob("labels/*/train_img_00003.txt"))
    assert label.read_text() == ""
    for txt in out.glob("labels/*/*.txt"):
        assert all(line.split()[0] in {"0", "1"} for line in txt.read_text().splitlines())


def test_bad_label_lines_are_reported_with_line_numbers(v1: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(v1, src)
    (src / "labels/train/img_00001.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n0 0.5 0.5 0 0.1\n"
    )
    (src / "labels/val/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError) as err:
        _import(src, tmp_path / "data")
    msg = str(err.value)
    assert "labels/train/img_00001.txt:2: class id 7 out of range [0, 3)" in msg
    assert "labels/train/img_00001.txt:3: box" in msg and "outside the image" in msg
    assert "labels/train/img_00001.txt:4: box width and height must be positive" in msg
    assert "labels/val/orphan.txt: label file without an image" in msg
    assert not (tmp_path / "data" / "mine").exists()


def test_no_layout_or_no_names(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(DatasetError, match="no YOLO layout found"):
        _import(tmp_path / "src", tmp_path / "data")
    (tmp_path / "bare" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class names"):
        _import(tmp_path / "bare", tmp_path / "data")
    with pytest.raises(DatasetError, match=r"--source .*: folder not found"):
        _import(tmp_path / "nowhere", tmp_path / "data")
