"""The dataset validator, names loading and the content hash, on small hand-built datasets."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from detector.data import DatasetProblem, check_dataset, dataset_hash, load_names, validate_dataset
from detector.errors import DatasetError


def jpeg_bytes(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """A valid 3-class dataset: two labelled images per split plus one background image in train."""
    root = tmp_path / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for name in ("a", "b"):
            (root / "images" / split / f"{name}.jpg").write_bytes(jpeg_bytes())
            (root / "labels" / split / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.1 0.1 0.2 0.2\n")
    (root / "images" / "train" / "background.jpg").write_bytes(jpeg_bytes((0, 0, 0)))
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [circle, square, triangle]\n")
    return root


def test_valid_dataset_has_no_problems(ds: Path) -> None:
    assert validate_dataset(ds) == []
    assert check_dataset(ds) == {0: "circle", 1: "square", 2: "triangle"}


def set_line(text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / "labels" / "train" / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{text}\n")

    return apply


def truncate_image(root: Path) -> None:
    path = root / "images" / "val" / "b.jpg"
    path.write_bytes(path.read_bytes()[:-200])


def remove(rel: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


def write(rel: str, data: bytes) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / rel).write_bytes(data)

    return apply


def empty_split(root: Path) -> None:
    for p in (root / "images" / "val").iterdir():
        p.unlink()
    shutil.rmtree(root / "labels" / "val")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (set_line("0 0.5 0.5 0.2"), "labels/train/a.txt:2: expected 5 fields 'class cx cy w h', got 4"),
        (set_line("0 0.5 zero 0.2 0.2"), "labels/train/a.txt:2: non-numeric box value"),
        (set_line("0 0.5 nan 0.2 0.2"), "labels/train/a.txt:2: non-finite box value"),
        (set_line("7 0.5 0.5 0.2 0.2"), "labels/train/a.txt:2: class id 7 out of range [0, 3)"),
        (set_line("-1 0.5 0.5 0.2 0.2"), "labels/train/a.txt:2: class id -1 out of range [0, 3)"),
        (set_line("1.5 0.5 0.5 0.2 0.2"), "labels/train/a.txt:2: class id '1.5' is not an integer"),
        (set_line("0 0.95 0.5 0.2 0.2"), "labels/train/a.txt:2: box (cx=0.95, cy=0.5, w=0.2, h=0.2) extends outside"),
        (set_line("0 0.5 0.5 0 0.2"), "labels/train/a.txt:2: box width and height must be positive"),
        (write("labels/train/orphan.txt", b"0 0.5 0.5 0.1 0.1\n"), "labels/train/orphan.txt: label file without"),
        (truncate_image, "images/val/b.jpg: unreadable or corrupt image"),
        (write("images/train/a.jpg", b"\xff\xd8 not really a jpeg"), "images/train/a.jpg: unreadable or corrupt"),
        (empty_split, "images/val: split 'val' has no images"),
        (remove("images/val"), "images/val: missing split folder for 'val'"),
        (remove("labels/train"), "labels/train: split 'train' has no label files"),
        (remove("images"), "images: missing images/ folder"),
        (remove("data.yaml"), "data.yaml: missing"),
        (write("data.yaml", b"train: [unclosed\n"), "data.yaml: cannot read YAML"),
        (write("data.yaml", b"train: images/train\nnames: {0: a, 2: c}\n"), "data.yaml: class ids in `names`"),
    ],
)
def test_each_problem_is_reported_with_file_and_line(ds: Path, breakage: Callable[[Path], None], expected: str) -> None:
    assert validate_dataset(ds) == []
    breakage(ds)
    problems = [str(p) for p in validate_dataset(ds)]
    assert any(p.startswith(expected) for p in problems), problems
    with pytest.raises(DatasetError, match="problem"):
        check_dataset(ds)


def test_truncated_jpeg_is_caught_even_when_pil_tolerates_truncation(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Some libraries flip this PIL-wide switch, after which load() silently pads a truncated JPEG.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = ds / "images" / "val" / "b.jpg"
    path.write_bytes(path.read_bytes()[:-10])
    assert [str(p) for p in validate_dataset(ds)] == ["images/val/b.jpg: truncated JPEG (no end-of-image marker)"]


def test_problem_str_and_range_from_names(ds: Path) -> None:
    set_line("3 0.5 0.5 0.2 0.2")(ds)
    assert validate_dataset(ds) == [DatasetProblem("labels/train/a.txt", 2, "class id 3 out of range [0, 3)")]
    assert str(DatasetProblem("images", None, "missing")) == "images: missing"
    assert validate_dataset(ds, num_classes=4) == []  # an explicit class count overrides data.yaml's


def test_missing_root(tmp_path: Path) -> None:
    [problem] = validate_dataset(tmp_path / "nope")
    assert "dataset folder not found" in str(problem)


def test_only_requested_splits_are_checked(ds: Path) -> None:
    remove("images/val")(ds)
    assert validate_dataset(ds, splits=("train",)) == []
    assert validate_dataset(ds, splits=("train", "test"))[0].path == "images/test"


def test_check_dataset_lists_every_problem_but_caps_the_listing(ds: Path) -> None:
    (ds / "labels" / "train" / "a.txt").write_text("9 0.5 0.5 0.2 0.2\n" * 60)
    with pytest.raises(DatasetError) as info:
        check_dataset(ds)
    message = str(info.value)
    assert "60 problem(s)" in message
    assert "labels/train/a.txt:50: class id 9" in message
    assert "labels/train/a.txt:51:" not in message
    assert "... and 10 more" in message


@pytest.mark.parametrize(
    ("yaml_text", "names"),
    [
        ("names: [cat, dog]\n", {0: "cat", 1: "dog"}),
        ("names: {0: cat, 1: dog}\n", {0: "cat", 1: "dog"}),
        ("names: {'1': dog, '0': cat}\n", {0: "cat", 1: "dog"}),
    ],
)
def test_load_names_forms(tmp_path: Path, yaml_text: str, names: dict[int, str]) -> None:
    (tmp_path / "data.yaml").write_text(yaml_text)
    assert load_names(tmp_path) == names


@pytest.mark.parametrize("yaml_text", ["train: x\n", "names: []\n", "names: {a: cat}\n", "- just\n- a list\n"])
def test_load_names_rejects_malformed(tmp_path: Path, yaml_text: str) -> None:
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(DatasetError, match=r"data\.yaml"):
        load_names(tmp_path)


def test_dataset_hash_tracks_content_only(ds: Path, tmp_path: Path) -> None:
    digest = dataset_hash(ds)
    assert len(digest) == 64
    # Files that are not dataset content: the manifest (which records the hash) and Ultralytics' label cache.
    (ds / "manifest.json").write_text("{}")
    (ds / "labels" / "train.cache").write_bytes(b"cache")
    assert dataset_hash(ds) == digest
    moved = shutil.copytree(ds, tmp_path / "moved")
    assert dataset_hash(moved) == digest
    (ds / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    assert dataset_hash(ds) != digest
    (moved / "images" / "train" / "b.jpg").rename(moved / "images" / "train" / "c.jpg")
    assert dataset_hash(moved) != digest
