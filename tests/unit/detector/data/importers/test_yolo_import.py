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


def _flat(v1: Path, dest: Path, names: str, n: int) -> Path:
    """A splitless YOLO folder (as the service's inbox writes) of `n` of v1's test images, renamed."""
    for folder in ("images", "labels"):
        (dest / folder).mkdir(parents=True)
    for i, image in enumerate(sorted((v1 / "images" / "test").glob("*"))[:n]):
        shutil.copy(image, dest / "images" / f"new_{i}{image.suffix}")
        shutil.copy(v1 / "labels" / "test" / f"{image.stem}.txt", dest / "labels" / f"new_{i}.txt")
    (dest / "classes.txt").write_text(names)
    return dest


def test_base_keeps_its_splits_and_adds_the_source(v1: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    _import(v1, root)  # data/mine: the current version
    inbox = _flat(v1, tmp_path / "inbox", "circle\nsquare\ntriangle\n", 2)
    report = import_dataset(ImportRequest("yolo", "v3", root=root, source=inbox, base="mine"))
    assert report["base"] == {"version": "mine", "images": 32, "added": 2}
    assert sum(report["counts"].values()) == 34  # two images may all go to one split: none is forced into val
    for split in ("train", "val", "test"):
        before = {p.name for p in (root / "mine" / "images" / split).iterdir()}
        after = {p.name for p in (root / "v3" / "images" / split).iterdir()}
        assert before <= after and all(n.startswith("new_") for n in after - before)
    assert report["names"] == {"0": "circle", "1": "square", "2": "triangle"}


def test_base_classes_come_first_and_new_ones_are_appended(v1: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    _import(v1, root)
    # The inbox of a model that knew the classes in another order, and one more: labels are remapped by name.
    inbox = _flat(v1, tmp_path / "inbox", "triangle\nsquare\ncircle\nstar\n", 3)
    report = import_dataset(ImportRequest("yolo", "v3", root=root, source=inbox, base="mine"))
    assert report["names"] == {"0": "circle", "1": "square", "2": "triangle", "3": "star"}
    original = {p.name: p.read_text() for p in (tmp_path / "inbox" / "labels").iterdir()}
    for label in (root / "v3" / "labels").rglob("new_*.txt"):
        swapped = [ln.split() for ln in original[label.name].splitlines()]
        remap = {"0": "2", "1": "1", "2": "0"}  # triangle <-> circle
        assert [ln.split() for ln in label.read_text().splitlines()] == [[remap[r[0]], *r[1:]] for r in swapped]


def test_a_missing_base_is_a_clear_error(v1: Path, tmp_path: Path) -> None:
    inbox = _flat(v1, tmp_path / "inbox", "circle\nsquare\ntriangle\n", 1)
    with pytest.raises(DatasetError, match=r"--base v2: .* is not a dataset version"):
        import_dataset(ImportRequest("yolo", "v3", root=tmp_path / "data", source=inbox, base="v2"))
    assert not (tmp_path / "data" / "v3").exists()
