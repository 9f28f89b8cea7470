"""Writing an imported version: into a staging folder beside `data/<version>`, checked by the validator, renamed into
place only when everything is right. A failed import leaves nothing under the version's name (and no staging
folder); an existing version is replaced only with `force`, and then in one rename (see `detector.files`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from detector.data.hashing import dataset_hash
from detector.data.importers.classes import ClassMap
from detector.data.importers.source import SourceImage, raise_if_problems
from detector.data.validate import check_dataset, validate_dataset
from detector.data.yolo_format import Label, present_splits, write_data_yaml, write_label_file
from detector.errors import DatasetError
from detector.files import replace_dir, staging_dir

MANIFEST = "manifest.json"


def output_collisions(splits: dict[str, list[SourceImage]]) -> list[str]:
    """Two source images that would land on one file (same split, same stem), or one image in two splits."""
    problems: list[str] = []
    seen: dict[Path, str] = {}
    for split, images in splits.items():
        stems: dict[str, SourceImage] = {}
        for im in images:
            stem = Path(im.name).stem
            if stem in stems:
                problems.append(
                    f"{im.where}: duplicate file name: {im.name!r} and {stems[stem].name!r} ({stems[stem].where}) "
                    f"would share labels/{split}/{stem}.txt"
                )
            else:
                stems[stem] = im
            if im.path in seen and seen[im.path] != split:
                problems.append(f"{im.where}: the image {im.path} is in both the {seen[im.path]} and {split} splits")
            seen.setdefault(im.path, split)
    return problems


def write_version(
    dest: Path,
    splits: dict[str, list[SourceImage]],
    class_map: ClassMap,
    manifest_extra: dict[str, Any],
    force: bool = False,
) -> dict[str, Any]:
    """Write the YOLO dataset, validate it, add manifest.json and move it to `dest`; return the manifest."""
    if dest.exists() and not force:
        raise DatasetError(f"{dest} already exists; pass --force to replace it")
    ids = class_map.ids
    staged = staging_dir(dest, "import")
    try:
        objects: dict[str, dict[str, int]] = {}
        for split, images in splits.items():
            hist = dict.fromkeys(range(len(ids)), 0)
            for im in images:
                labels = [Label(ids[b.cls], b.cx, b.cy, b.w, b.h) for b in im.boxes if b.cls in ids]
                (staged / "images" / split).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(im.path, staged / "images" / split / im.name)
                write_label_file(staged / "labels" / split / f"{Path(im.name).stem}.txt", labels)
                for lb in labels:
                    hist[lb.cls] += 1
            objects[split] = {str(k): v for k, v in hist.items()}
        names = dict(enumerate(class_map.names))
        write_data_yaml(staged / "data.yaml", names, list(splits))
        problems = validate_dataset(staged, len(names), splits=present_splits(staged))
        raise_if_problems([f"converted {p}" for p in problems], "the converted dataset")
        manifest = {
            "version": dest.name,
            "names": {str(k): v for k, v in names.items()},
            "counts": {s: len(splits.get(s, [])) for s in ("train", "val", "test")},
            "objects_per_class": objects,
            **manifest_extra,
            "sha256": dataset_hash(staged),
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists() and not force:  # appeared while we worked
            raise DatasetError(f"{dest} already exists; pass --force to replace it")
        replace_dir(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return manifest


def imported_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of a version `detector data import` wrote, or None (no manifest, or a generated version)."""
    path = Path(root) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return data if isinstance(source, dict) and "format" in source else None


def verify_imported(root: Path) -> dict[str, Any]:
    """Check an imported version is intact (valid, and its content hash still the one recorded at import); return
    its summary. `detector data generate` calls this instead of generating when `data.version` names one."""
    manifest = imported_manifest(root)
    if manifest is None:
        raise DatasetError(f"{root}: not an imported dataset (no {MANIFEST} written by `detector data import`)")
    check_dataset(root, splits=present_splits(root))
    digest = dataset_hash(root)
    if digest != manifest.get("sha256"):
        raise DatasetError(
            f"{root} changed since it was imported (content sha256 {digest[:12]}... is not the {MANIFEST} one, "
            f"{str(manifest.get('sha256'))[:12]}...); import it again with --force, or `dvc checkout {root}`"
        )
    return {
        "dataset": str(root),
        "version": manifest.get("version", Path(root).name),
        "imported_from": manifest["source"]["format"],
        "counts": manifest.get("counts", {}),
        "sha256": digest,
    }
