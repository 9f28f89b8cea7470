"""Made splits are deterministic and grouped by image; --classes selects, reorders and refuses unknown names."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from detector.data.importers.classes import build_class_map, parse_selection
from detector.data.importers.source import Source, SourceImage, split_of
from detector.data.importers.splits import assign_splits, check_fractions, make_splits
from detector.errors import DatasetError


def images(n: int, split: str | None = None) -> list[SourceImage]:
    return [SourceImage(Path(f"/src/im_{i:04d}.jpg"), f"im_{i:04d}.jpg", f"#{i}", split) for i in range(n)]


def names(splits: dict[str, list[SourceImage]]) -> dict[str, list[str]]:
    return {s: [im.name for im in ims] for s, ims in splits.items()}


def test_made_splits_are_deterministic_exact_and_disjoint() -> None:
    pool = images(200)
    first = names(make_splits(pool, 0.2, 0.1, seed=0))
    shuffled = pool[:]
    random.Random(1).shuffle(shuffled)
    assert names(make_splits(shuffled, 0.2, 0.1, seed=0)) == first  # order of the source does not matter
    assert {s: len(v) for s, v in first.items()} == {"train": 140, "val": 40, "test": 20}
    all_names = [n for v in first.values() for n in v]
    assert len(all_names) == len(set(all_names)) == 200  # each image in exactly one split
    assert names(make_splits(pool, 0.2, 0.1, seed=1)) != first
    # Adding images keeps almost every earlier image where it was.
    grown = names(make_splits(images(220), 0.2, 0.1, seed=0))
    where = {n: s for s, v in grown.items() for n in v}
    moved = sum(1 for s, v in first.items() for n in v if where[n] != s)
    assert moved <= 10


def test_source_splits_kept_and_val_carved_from_train() -> None:
    pool = images(10, "train") + images(0)
    splits, how = assign_splits(pool, 0.3, 0.1, seed=0)
    assert how == "source; val made from train" and {s: len(v) for s, v in splits.items()} == {"train": 7, "val": 3}
    tagged = [*images(4, "train"), SourceImage(Path("/v.jpg"), "v.jpg", "v", "val")]
    splits, how = assign_splits(tagged, 0.3, 0.1, seed=0)
    assert how == "source" and names(splits)["val"] == ["v.jpg"]
    with pytest.raises(DatasetError, match="no train split"):
        assign_splits([SourceImage(Path("/t.jpg"), "t.jpg", "t", "test")], 0.2, 0.1, 0)
    with pytest.raises(DatasetError, match="cannot make train, val"):
        make_splits(images(2), 0.2, 0.1, 0)


@pytest.mark.parametrize(("val", "test"), [(0, 0.1), (1, 0), (0.5, 0.5), (0.2, -0.1)])
def test_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(DatasetError, match="fraction"):
        check_fractions(val, test)


def test_split_names() -> None:
    assert split_of("instances_val2017.json") == "val"
    assert split_of("valid") == "val" and split_of("train") == "train" and split_of("test.txt") == "test"
    assert split_of("_annotations.coco.json") is None and split_of("trainval") is None
    assert split_of("test_project", exact=True) is None and split_of("Valid", exact=True) == "val"


def test_class_selection() -> None:
    src = Source("coco", [], ["cat", "dog", "bird"])
    assert build_class_map(src, None).names == ("cat", "dog", "bird")
    cmap = build_class_map(src, parse_selection("bird, cat"))
    assert cmap.names == ("bird", "cat") and cmap.dropped == ("dog",)
    assert cmap.as_manifest() == {"cat": 1, "dog": None, "bird": 0}
    with pytest.raises(DatasetError, match=r"'fish' not in the source; its classes are: cat, dog, bird"):
        build_class_map(src, parse_selection("cat,fish"))
    with pytest.raises(DatasetError, match="listed twice: cat"):
        parse_selection("cat,cat")
    with pytest.raises(DatasetError, match="empty class name"):
        parse_selection("cat,,dog")
    assert parse_selection("  ") is None
