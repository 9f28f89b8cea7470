"""Pascal VOC XML -> data/<version>: v1 exported as a VOC devkit folder and imported back; difficult; every rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.data import validate_dataset
from detector.data.importers import ImportRequest, import_dataset
from detector.data.yolo_format import list_split_images
from detector.errors import DatasetError
from tests.unit.data.importers.exporters import export_voc, labels_of, voc_xml


def _import(voc: Path, root: Path, **kw: Any) -> dict[str, Any]:
    req = ImportRequest("voc", "mine", root=root, images=voc / "JPEGImages", annotations=[voc / "Annotations"], **kw)
    return import_dataset(req)


@pytest.fixture(scope="module")
def voc(v1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_voc(v1, tmp_path_factory.mktemp("voc") / "VOC")


def test_round_trip_with_image_sets(v1: Path, voc: Path, tmp_path: Path) -> None:
    report = _import(voc, tmp_path / "data")
    out = tmp_path / "data" / "mine"
    assert report["splits"]["from"] == "source" and report["counts"] == {"train": 20, "val": 8, "test": 4}
    assert validate_dataset(out, splits=("train", "val", "test")) == []
    for split in ("train", "val", "test"):
        for img in list_split_images(v1, split):
            got = labels_of(out, split, f"{split}_{img.stem}")
            want = labels_of(v1, split, img.stem)
            # Names appear in file order, so ids may differ from v1's: compare by name.
            got_names = [report["names"][str(int(c))] for c in got[:, 0]]
            want_names = [["circle", "square", "triangle"][int(c)] for c in want[:, 0]]
            assert got_names == want_names
            np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-4)


def test_class_order_follows_labelmap_and_classes_flag(voc: Path, tmp_path: Path) -> None:
    src = tmp_path / "VOC"
    shutil.copytree(voc, src)
    (src / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\ntriangle:0,0,0::\ncircle:1,1,1::\nsquare:2,2,2::\n"
    )
    assert _import(src, tmp_path / "a")["names"] == {"0": "triangle", "1": "circle", "2": "square"}
    report = _import(src, tmp_path / "b", classes="square")
    assert report["names"] == {"0": "square"} and set(report["classes"]["dropped"]) == {"triangle", "circle"}
    assert sum(report["negatives"].values()) > 0  # images with only circles/triangles stay, as negatives


def test_without_image_sets_splits_are_made(voc: Path, tmp_path: Path) -> None:
    src = tmp_path / "VOC"
    shutil.copytree(voc, src)
    shutil.rmtree(src / "ImageSets")
    report = _import(src, tmp_path / "data", val_fraction=0.25, test_fraction=0.125)
    assert report["splits"]["from"] == "made" and report["counts"] == {"train": 20, "val": 8, "test": 4}


def _one_image_voc(v1: Path, tmp: Path, objects: list[tuple[str, tuple[float, ...], int]]) -> Path:
    src = tmp / "VOC"
    for d in ("JPEGImages", "Annotations"):
        (src / d).mkdir(parents=True)
    for i, img in enumerate(list_split_images(v1, "train")[:6]):
        shutil.copyfile(img, src / "JPEGImages" / img.name)
        objs = objects if i == 0 else [("circle", (10, 10, 30, 30), 0)]
        (src / "Annotations" / f"{img.stem}.xml").write_text(voc_xml(img.name, (96, 96), objs))
    return src


def test_difficult_dropped_by_default_or_kept(v1: Path, tmp_path: Path) -> None:
    src = _one_image_voc(v1, tmp_path, [("circle", (1, 2, 40, 50), 1), ("square", (50.5, 50.25, 90.75, 95), 0)])
    report = _import(src, tmp_path / "a")
    assert report["difficult"] == "dropped" and report["dropped_objects"] == {"difficult": 1}
    out = tmp_path / "a" / "mine"
    label = next(out.glob("labels/*/img_00000.txt")).read_text().splitlines()
    assert label == ["1 0.735677 0.756510 0.419271 0.466146"]  # decimals read as written: (50.5+90.75)/2/96 ...
    report = _import(src, tmp_path / "b", keep_difficult=True)
    assert report["difficult"] == "kept" and report["dropped_objects"] == {}
    assert len(next((tmp_path / "b" / "mine").glob("labels/*/img_00000.txt")).read_text().splitlines()) == 2


def _broken(src: Path, tmp: Path) -> str:
    with pytest.raises(DatasetError) as err:
        _import(src, tmp / "data")
    assert not (tmp / "data").exists() or not any((tmp / "data").iterdir())
    return str(err.value)


def test_box_outside_and_zero_area_name_file_and_line(v1: Path, tmp_path: Path) -> None:
    src = _one_image_voc(v1, tmp_path, [("circle", (10, 10, 120, 30), 0), ("square", (5, 5, 5, 40), 0)])
    msg = _broken(src, tmp_path)
    xml = src / "Annotations" / "img_00000.xml"
    lines = xml.read_text().splitlines()
    obj_lines = [n for n, line in enumerate(lines, start=1) if line.strip() == "<object>"]
    assert f"{xml}:{obj_lines[0]} (object 'circle'): box (x0=10.0, y0=10.0, x1=120.0, y1=30.0) lies outside" in msg
    assert f"{xml}:{obj_lines[1]} (object 'square'): zero-area box" in msg


def test_missing_and_unreadable_images(v1: Path, tmp_path: Path) -> None:
    src = _one_image_voc(v1, tmp_path, [("circle", (10, 10, 30, 30), 0)])
    (src / "JPEGImages" / "img_00000.jpg").unlink()
    (src / "JPEGImages" / "img_00001.jpg").write_bytes(b"GIF89a garbage")
    msg = _broken(src, tmp_path)
    assert "img_00000.xml: image file not found" in msg
    assert "img_00001.xml: img_00001.jpg: unreadable or corrupt image" in msg


def test_unknown_class_against_labelmap(v1: Path, tmp_path: Path) -> None:
    src = _one_image_voc(v1, tmp_path, [("dog", (10, 10, 30, 30), 0)])
    (src / "labelmap.txt").write_text("circle:0,0,0::\n")
    assert "(object 'dog'): class 'dog' is not in labelmap.txt (circle)" in _broken(src, tmp_path)


def test_duplicate_file_names_and_bad_xml(v1: Path, tmp_path: Path) -> None:
    src = _one_image_voc(v1, tmp_path, [("circle", (10, 10, 30, 30), 0)])
    (src / "Annotations" / "copy.xml").write_text(voc_xml("img_00000.jpg", (96, 96), []))
    (src / "Annotations" / "broken.xml").write_text(
        "<annotation>\n  <filename>x.jpg</filename>\n  <object>\n</annotation>\n"
    )
    msg = _broken(src, tmp_path)
    assert "img_00000.xml: duplicate file name 'img_00000.jpg'" in msg or "copy.xml: duplicate file name" in msg
    assert "broken.xml:4: invalid XML (mismatched tag)" in msg


def test_image_sets_naming_a_missing_annotation(voc: Path, tmp_path: Path) -> None:
    src = tmp_path / "VOC"
    shutil.copytree(voc, src)
    with (src / "ImageSets/Main/val.txt").open("a") as f:
        f.write("ghost\n")
    assert "'ghost'" in _broken(src, tmp_path)


def test_manifest_records_source_and_choices(voc: Path, tmp_path: Path) -> None:
    _import(voc, tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "mine" / "manifest.json").read_text())
    assert manifest["source"]["format"] == "voc"
    assert manifest["import"]["difficult"] == "dropped"
    assert set(manifest["import"]["classes"]["class_map"]) == {"circle", "square", "triangle"}
