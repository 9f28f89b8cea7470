"""Train/val/test assignment: the source's own splits when it has them, else deterministic ones.

Made splits are grouped by image: each image (one file name, with all its boxes) goes to exactly one split, chosen
by the sha256 of `seed:file name`. Images are ranked by that hash and the first `round(n * test_fraction)` go to
test, the next `round(n * val_fraction)` to val, the rest to train, so the split is the same on every machine and
run, does not depend on the order the source lists images in, and adding images moves few others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from detector.data.importers.source import SourceImage
from detector.data.yolo_format import SPLITS
from detector.errors import DatasetError


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise DatasetError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    if not 0 <= test_fraction < 1:
        raise DatasetError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"--val-fraction + --test-fraction must leave images for train, got {val_fraction + test_fraction}"
        )


def split_key(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _count(n: int, fraction: float, at_least_one: bool) -> int:
    return max(int(at_least_one), round(n * fraction)) if fraction > 0 else 0


def make_splits(
    images: Iterable[SourceImage], val_fraction: float, test_fraction: float, seed: int, complete: bool = True
) -> dict[str, list[SourceImage]]:
    """Assign every image to train, val or test (see the module docstring). `complete`: every split gets at least
    one image (a dataset of its own); False when the images join a dataset that has its splits already (`--base`),
    where a few added images may all go to train."""
    ranked = sorted(images, key=lambda im: (split_key(im.name, seed), im.name))
    n_test, n_val = _count(len(ranked), test_fraction, complete), _count(len(ranked), val_fraction, complete)
    if complete and len(ranked) - n_test - n_val < 1:
        raise DatasetError(
            f"{len(ranked)} image(s) cannot make train, val{' and test' if n_test else ''} splits; add images "
            "or lower --val-fraction/--test-fraction"
        )
    out = {"test": ranked[:n_test], "val": ranked[n_test : n_test + n_val], "train": ranked[n_test + n_val :]}
    return {s: sorted(out[s], key=lambda im: im.name) for s in SPLITS if out[s]}


def assign_splits(
    images: list[SourceImage], val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, list[SourceImage]], str]:
    """The final splits and how they came about ("source", "source; val made from train", "made")."""
    if not images:
        raise DatasetError("the source has no images")
    if all(im.split is None for im in images):
        return make_splits(images, val_fraction, test_fraction, seed), "made"
    by_split = {s: [im for im in images if (im.split or "train") == s] for s in SPLITS}
    if not by_split["train"]:
        have = ", ".join(s for s in SPLITS if by_split[s])
        raise DatasetError(f"the source's splits ({have}) have no train split")
    how = "source"
    if not by_split["val"]:
        carved = make_splits(by_split["train"], val_fraction, 0.0, seed)
        by_split["train"], by_split["val"] = carved["train"], carved["val"]
        how = "source; val made from train"
    return {s: sorted(by_split[s], key=lambda im: im.name) for s in SPLITS if by_split[s]}, how
