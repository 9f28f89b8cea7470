"""COCO JSON -> data/<version>: the generator's v1 exported by the tests and imported back; every validation rule."""

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
from tests.unit.detector.data.importers.exporters import coco_dict, export_coco, labels_of


def _import(root: Path, images: Path, files: list[Path], **kw: Any) -> dict[str, Any]:
    return import_dataset(ImportRequest("coco", "mine", root=root, images=images, annotations=files, **kw))


def test_round_trip_per_split_files(v1: Path, tmp_path: Path) -> None:
    files = export_coco(v1, tmp_path / "coco")
    report = _import(tmp_path / "data", v1 / "images", list(files.values()))
    out = tmp_path / "data" / "mine"
    assert report["splits"]["from"] == "source"
    assert report["names"] == {"0": "circle", "1": "square", "2": "triangle"}
    assert validate_dataset(out, splits=("train", "val", "test")) == []
    for split in ("train", "val", "test"):
        originals = list_split_images(v1, split)
        assert [p.name for p in list_split_images(out, split)] == [p.name for p in originals]
        for img in originals:
            assert (out / "images" / split / img.name).read_bytes() == img.read_bytes()
            np.testing.assert_allclose(labels_of(out, split, img.stem), labels_of(v1, split, img.stem), atol=1e-4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["format"] == "coco" and manifest["import"]["classes"]["class_map"]["square"] == 1
    assert manifest["counts"] == {"train": 20, "val": 8, "test": 4}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mine"]  # no staging folder left


def test_single_file_gets_made_splits_and_crowd_is_dropped(v1: Path, tmp_path: Path) -> None:
    data = coco_dict(v1, "train")
    crowd = dict(data["annotations"][0], id=9999, iscrowd=1)
    data["annotations"].append(crowd)
    # An image with no annotations at all stays, as a negative.
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 2 or a["iscrowd"]]
    path = tmp_path / "all.json"
    path.write_text(json.dumps(data))
    report = _import(tmp_path / "data", v1 / "images" / "train", [path], val_fraction=0.25, test_fraction=0.1)
    assert report["splits"]["from"] == "made"
    assert report["counts"] == {"train": 13, "val": 5, "test": 2}
    assert report["dropped_objects"] == {"crowd": 1} and report["crowd"] == "dropped"
    assert sum(report["negatives"].values()) == 1
    out = tmp_path / "data" / "mine"
    name = next(i["file_name"] for i in data["images"] if i["id"] == 2)
    label = next(out.glob(f"labels/*/{Path(name).stem}.txt"))
    assert label.read_text() == ""


def test_category_ids_need_not_be_contiguous_and_classes_select(v1: Path, tmp_path: Path) -> None:
    data = coco_dict(v1, "val")
    remap = {1: 7, 2: 3, 3: 40}  # circle=7, square=3, triangle=40: id order is square, circle, triangle
    for c in data["categories"]:
        c["id"] = remap[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    path = tmp_path / "val.json"  # a lone val file is the whole dataset
    path.write_text(json.dumps(data))
    report = _import(tmp_path / "data", v1 / "images" / "val", [path])
    assert report["classes"]["source"] == ["square", "circle", "triangle"]
    shutil.rmtree(tmp_path / "data")
    report = _import(tmp_path / "data", v1 / "images" / "val", [path], classes="triangle,circle")
    assert report["names"] == {"0": "triangle", "1": "circle"}
    assert report["classes"]["class_map"] == {"square": None, "circle": 1, "triangle": 0}
    n_square = sum(1 for a in data["annotations"] if a["category_id"] == 3)
    assert n_square > 0 and report["classes"]["dropped"] == {"square": n_square}
    assert report["dropped_objects"]["unselected classes"] == n_square


def _broken(v1: Path, tmp_path: Path, edit: Any) -> str:
    data = coco_dict(v1, "train")
    edit(data, tmp_path)
    path = tmp_path / "instances_train.json"
    path.write_text(json.dumps(data, indent=1))
    images = tmp_path / "images"
    if not images.exists():
        shutil.copytree(v1 / "images" / "train", images)
    with pytest.raises(DatasetError) as err:
        _import(tmp_path / "data", images, [path])
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())  # nothing half-written
    return str(err.value)


def _ann(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    ann: dict[str, Any] = data["annotations"][i]
    return ann


def test_missing_image(v1: Path, tmp_path: Path) -> None:
    msg = _broken(v1, tmp_path, lambda d, t: d["images"][3].update(file_name="nope.jpg"))
    assert "image id 4 ('nope.jpg'): image file not found" in msg


def test_box_outside_the_image(v1: Path, tmp_path: Path) -> None:
    def edit(d: dict[str, Any], t: Path) -> None:
        _ann(d, 2)["bbox"] = [80.0, 10.0, 30.0, 10.0]  # 96 px image: x1 = 110

    msg = _broken(v1, tmp_path, edit)
    assert "annotation id 3" in msg and "outside the 96x96 image" in msg


def test_zero_area_box(v1: Path, tmp_path: Path) -> None:
    msg = _broken(v1, tmp_path, lambda d, t: _ann(d, 1)["bbox"].__setitem__(3, 0))
    assert "annotation id 2" in msg and "zero-area box" in msg


def test_unknown_category_id(v1: Path, tmp_path: Path) -> None:
    msg = _broken(v1, tmp_path, lambda d, t: _ann(d, 4).update(category_id=99))
    assert "annotation id 5" in msg and "unknown category_id 99" in msg


def test_unknown_image_id(v1: Path, tmp_path: Path) -> None:
    msg = _broken(v1, tmp_path, lambda d, t: _ann(d, 0).update(image_id=12345))
    assert "annotation id 1: unknown image_id 12345" in msg


def test_duplicate_file_names(v1: Path, tmp_path: Path) -> None:
    msg = _broken(v1, tmp_path, lambda d, t: d["images"][5].update(file_name=d["images"][0]["file_name"]))
    assert "image id 6: duplicate file name 'img_00000.jpg' (also image id 1)" in msg


def test_unreadable_image(v1: Path, tmp_path: Path) -> None:
    def edit(d: dict[str, Any], t: Path) -> None:
        shutil.copytree(v1 / "images" / "train", t / "images")
        (t / "images" / "img_00002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")

    msg = _broken(v1, tmp_path, edit)
    assert "image id 3 ('img_00002.jpg')" in msg and "unreadable or corrupt image" in msg


def test_declared_size_differs_from_the_file(v1: Path, tmp_path: Path) -> None:
    msg = _broken(v1, tmp_path, lambda d, t: d["images"][0].update(width=640))
    assert "image id 1" in msg and "width/height 640x96 differ from the image file's 96x96" in msg


def test_every_problem_is_listed_at_once(v1: Path, tmp_path: Path) -> None:
    def edit(d: dict[str, Any], t: Path) -> None:
        _ann(d, 0)["category_id"] = 99
        _ann(d, 1)["bbox"] = [1, 1, -3, 4]
        d["images"][3]["file_name"] = "gone.png"

    msg = _broken(v1, tmp_path, edit)
    assert "3 problem(s)" in msg and "nothing was imported" in msg


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "images": [],\n  "annotations": [,]\n}\n')
    with pytest.raises(DatasetError, match=r"bad\.json:3: invalid JSON"):
        _import(tmp_path / "data", tmp_path, [path])


def test_empty_dataset_and_missing_paths(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(DatasetError, match="has no images"):
        _import(tmp_path / "data", tmp_path, [path])
    with pytest.raises(DatasetError, match=r"--annotations .*missing\.json: file not found"):
        _import(tmp_path / "data", tmp_path, [tmp_path / "missing.json"])
    with pytest.raises(DatasetError, match=r"--images .*: folder not found"):
        _import(tmp_path / "data", tmp_path / "nope", [path])


def test_roboflow_layout_a_folder_of_split_folders(v1: Path, tmp_path: Path) -> None:
    rf = tmp_path / "rf"
    for split, folder in (("train", "train"), ("val", "valid")):
        shutil.copytree(v1 / "images" / split, rf / folder)
        (rf / folder / "_annotations.coco.json").write_text(json.dumps(coco_dict(v1, split)))
    report = import_dataset(ImportRequest("coco", "rf", root=tmp_path / "data", annotations=[rf]))
    assert report["counts"] == {"train": 20, "val": 8, "test": 0} and report["splits"]["from"] == "source"
    out = tmp_path / "data" / "rf"
    np.testing.assert_allclose(labels_of(out, "val", "img_00003"), labels_of(v1, "val", "img_00003"), atol=1e-4)


def test_split_files_must_name_distinct_splits(v1: Path, tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(coco_dict(v1, "val")))
    with pytest.raises(DatasetError, match=r"several COCO files need one split each.*a\.json -> \?"):
        _import(tmp_path / "data", v1 / "images" / "val", [tmp_path / "a.json", tmp_path / "b.json"])


def test_bbox_is_0_based_x_y_width_height_in_pixels(tmp_path: Path) -> None:
    """COCO's definition (https://cocodataset.org/#format-data), not our writer: `bbox` = [x, y, width, height], in
    continuous pixels from the image's top-left corner, so [0, 0, W, H] is the whole image. Hand-written file."""
    w, h = 64, 48
    boxes = {  # file: bbox as COCO writes it, YOLO (cx, cy, w, h) it means
        "whole.png": ([0, 0, 64, 48], (0.5, 0.5, 1.0, 1.0)),
        "first_pixel.png": ([0, 0, 1, 1], (0.5 / w, 0.5 / h, 1 / w, 1 / h)),
        "part.png": ([10.5, 20.25, 9.5, 3.75], (15.25 / w, 22.125 / h, 9.5 / w, 3.75 / h)),
    }
    for name in boxes:
        Image.new("RGB", (w, h), (90, 120, 150)).save(tmp_path / name)
    data = {
        "images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n in enumerate(boxes, start=1)],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": b, "iscrowd": 0}
            for i, (b, _) in enumerate(boxes.values(), start=1)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "train.json").write_text(json.dumps(data))
    _import(tmp_path / "data", tmp_path, [tmp_path / "train.json"], val_fraction=0.3, test_fraction=0.0)
    out = tmp_path / "data" / "mine"
    for name, (_, want) in boxes.items():
        label = next(out.glob(f"labels/*/{Path(name).stem}.txt"))
        np.testing.assert_allclose(labels_of(out, label.parent.name, label.stem), [[0, *want]], atol=1e-6)
