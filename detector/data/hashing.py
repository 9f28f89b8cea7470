"""Content hash of a YOLO dataset folder, logged with every training run to pin the exact data."""

from __future__ import annotations

import hashlib
from pathlib import Path

# Only the files that define the dataset: Ultralytics writes `labels/<split>.cache` next to the labels during
# training and the generator's manifest.json records this very hash, so neither may take part.
_HASHED_TOP_FILES = ("data.yaml",)
_HASHED_DIRS = ("images", "labels")
_EXCLUDED_SUFFIXES = (".cache",)


def dataset_files(root: Path) -> list[Path]:
    """The dataset's content files (data.yaml, images/**, labels/**), sorted by relative POSIX path."""
    files = [root / name for name in _HASHED_TOP_FILES if (root / name).is_file()]
    for d in _HASHED_DIRS:
        if (root / d).is_dir():
            files += [p for p in (root / d).rglob("*") if p.is_file() and p.suffix not in _EXCLUDED_SUFFIXES]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def dataset_hash(root: Path) -> str:
    """sha256 over each content file's relative path, size and bytes (manifest.json and caches excluded)."""
    h = hashlib.sha256()
    for path in dataset_files(root):
        data = path.read_bytes()
        # Path and length framing: moving bytes between files, or renaming one, changes the hash.
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
