"""Pascal VOC XML -> data/<version>: v1 exported as a VOC devkit folder and imported back; difficult; every rule;
the devkit's 1-based pixel convention checked on hand-written files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detector.data import validate_dataset
from detector.data.importers import ImportRequest, import_dataset
from detector.data.yolo_format import list_split_images
from detector.errors import DatasetError
from tests.unit.detector.data.importers.exporters import export_voc, labels_of, voc_xml


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
    # Decimals keep their fraction; the left/top edges move by the 1-based origin: ((50.5 - 1) + 90.75) / 2 / 96 ...
    assert label == ["1 0.730469 0.751302 0.429688 0.476562"]
    report = _import(src, tmp_path / "b", keep_difficult=True)
    assert report["difficult"] == "kept" and report["dropped_objects"] == {}
    assert len(next((tmp_path / "b" / "mine").glob("labels/*/img_00000.txt")).read_text().splitlines()) == 2


def _broken(src: Path, tmp: Path) -> str:
    with pytest.raises(DatasetError) as err:
        _import(src, tmp / "data")
    assert not (tmp / "data").exists() or not any((tmp / "data").iterdir())
    return str(err.value)


def test_box_outside_and_zero_area_name_file_and_line(v1: Path, tmp_path: Path) -> None:
    src = _one_image_voc(v1, tmp_path, [("circle", (10, 10, 120, 30), 0), ("square", (6, 5, 5, 40), 0)])
    msg = _broken(src, tmp_path)
    xml = src / "Annotations" / "img_00000.xml"
    lines = xml.read_text().splitlines()
    obj_lines = [n for n, line in enumerate(lines, start=1) if line.strip() == "<object>"]
    assert f"{xml}:{obj_lines[0]} (object 'circle'): box (xmin=10, ymin=10, xmax=120, ymax=30) lies outside" in msg
    assert f"{xml}:{obj_lines[1]} (object 'square'): zero-area box (xmin=6, ymin=5, xmax=5, ymax=40)" in msg


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
    # Files are read sorted by name: copy.xml claims img_00000.jpg first, so img_00000.xml is the duplicate.
    assert f"img_00000.xml: duplicate file name 'img_00000.jpg' (also in {src / 'Annotations' / 'copy.xml'})" in msg
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


# The devkit's definition, not our writer: <bndbox> corners are 1-based pixel indices, both ends included, so pixel i
# spans [i - 1, i] in continuous coordinates and a box from pixel 1 to pixel W covers the whole width
# (width = xmax - xmin + 1). Hand-written files on a 64x48 image; expected YOLO values from that definition.
_W, _H = 64, 48
_DEVKIT_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>{stem}.png</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>thing</name><difficult>0</difficult>
    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>
  </object>
</annotation>
"""
_DEVKIT_BOXES = {  # stem: (xmin, ymin, xmax, ymax) as the devkit writes them, YOLO (cx, cy, w, h) it means
    "whole": ((1, 1, 64, 48), (0.5, 0.5, 1.0, 1.0)),
    "first_pixel": ((1, 1, 1, 1), (0.5 / _W, 0.5 / _H, 1 / _W, 1 / _H)),
    "last_pixel": ((64, 48, 64, 48), (63.5 / _W, 47.5 / _H, 1 / _W, 1 / _H)),
    "ten_by_four": ((11, 21, 20, 24), (15 / _W, 22 / _H, 10 / _W, 4 / _H)),  # pixels 11..20 x 21..24
}


def _devkit_folder(tmp: Path, boxes: dict[str, tuple[float, ...]]) -> Path:
    src = tmp / "VOC"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (src / d).mkdir(parents=True)
    for stem, (xmin, ymin, xmax, ymax) in boxes.items():
        Image.new("RGB", (_W, _H), (90, 120, 150)).save(src / "JPEGImages" / f"{stem}.png")
        xml = _DEVKIT_XML.format(stem=stem, xmin=f"{xmin:g}", ymin=f"{ymin:g}", xmax=f"{xmax:g}", ymax=f"{ymax:g}")
        (src / "Annotations" / f"{stem}.xml").write_text(xml)
    stems = sorted(boxes)
    (src / "ImageSets/Main/train.txt").write_text("".join(f"{s}\n" for s in stems[1:]))
    (src / "ImageSets/Main/val.txt").write_text(f"{stems[0]}\n")
    return src


def _label(out: Path, stem: str) -> np.ndarray:
    split = next(p.parent.name for p in out.glob(f"labels/*/{stem}.txt"))
    return labels_of(out, split, stem)


def test_devkit_coordinates_are_1_based_inclusive_pixel_indices(tmp_path: Path) -> None:
    src = _devkit_folder(tmp_path, {k: v[0] for k, v in _DEVKIT_BOXES.items()})
    report = _import(src, tmp_path / "data")
    assert report["voc_origin"] == 1
    for stem, (_, want) in _DEVKIT_BOXES.items():
        np.testing.assert_allclose(_label(tmp_path / "data" / "mine", stem), [[0, *want]], atol=1e-6, err_msg=stem)


def test_zero_based_tools_with_voc_origin_0(tmp_path: Path) -> None:
    """CVAT/Datumaro write their 0-based continuous boxes as they are (xmin = x, xmax = x + w, decimals kept)."""
    boxes = {"whole": (0, 0, 64, 48), "part": (10, 20.5, 20, 24.25)}
    src = _devkit_folder(tmp_path, boxes)
    report = _import(src, tmp_path / "data", voc_origin=0)
    assert report["voc_origin"] == 0
    out = tmp_path / "data" / "mine"
    np.testing.assert_allclose(_label(out, "whole"), [[0, 0.5, 0.5, 1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(_label(out, "part"), [[0, 15 / _W, 22.375 / _H, 10 / _W, 3.75 / _H]], atol=1e-6)
    # The same 0-based file read with the devkit's default: xmin 0 is no 1-based pixel, so the hint names the flag.
    msg = _broken(src, tmp_path / "default")
    assert "whole.xml:5 (object 'thing'): box (xmin=0, ymin=0, xmax=64, ymax=48) starts before pixel 1" in msg
    assert "import with --voc-origin 0" in msg


def test_voc_origin_is_only_for_voc_and_only_0_or_1(v1: Path, tmp_path: Path) -> None:
    src = _devkit_folder(tmp_path, {"whole": (1, 1, 64, 48), "part": (2, 2, 9, 9)})
    with pytest.raises(DatasetError, match=r"--voc-origin 2: use 1 \(the VOC devkit's 1-based pixels\) or 0"):
        _import(src, tmp_path / "data", voc_origin=2)
    req = ImportRequest("yolo", "mine", root=tmp_path / "data", source=v1, voc_origin=0)
    with pytest.raises(DatasetError, match="--voc-origin is not used by --format yolo"):
        import_dataset(req)
