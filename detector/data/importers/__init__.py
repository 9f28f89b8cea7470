"""Bring your own data: COCO JSON, Pascal VOC XML and YOLO folders imported as a dataset version `data/<name>/`.

The result has exactly the generator's layout (`images/{train,val,test}`, `labels/...`, `data.yaml`,
`manifest.json`), so training, evaluation, the validator and `dvc exp run -S data.version=<name>` use it unchanged.
Steps: read the source with the format's reader (every problem collected, each with file and line or annotation
id), stop if there is any; map classes (`--classes` selects and reorders); keep the source's splits or make
deterministic ones; write into a staging folder, run the validator on it, add the manifest, rename into place.

Deliberate choices (details in each reader's docstring): COCO `iscrowd` boxes are dropped and counted; VOC
`difficult` objects are dropped and counted unless `keep_difficult`; VOC `<bndbox>` corners are the devkit's 1-based
pixel indices unless `voc_origin` is 0; images left with no objects stay, as negatives
(an empty label file).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.data.importers.classes import build_class_map, count_objects, parse_selection
from detector.data.importers.coco import read_coco
from detector.data.importers.source import Source, raise_if_problems
from detector.data.importers.splits import assign_splits, check_fractions, make_splits
from detector.data.importers.voc import read_voc
from detector.data.importers.writer import imported_manifest, output_collisions, verify_imported, write_version
from detector.data.importers.yolo import read_yolo
from detector.errors import DatasetError

FORMATS = ("coco", "voc", "yolo")
_VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
log = logging.getLogger(__name__)

__all__ = ["FORMATS", "ImportRequest", "import_dataset", "imported_manifest", "verify_imported"]


@dataclass(frozen=True)
class ImportRequest:
    format: str
    version: str
    root: Path = Path("data")  # the version is written to root/version
    images: Path | None = None  # coco, voc
    annotations: list[Path] = field(default_factory=list)  # coco: JSON files or folders; voc: one folder
    source: Path | None = None  # yolo
    classes: str | None = None  # "a,b,c": select and reorder
    val_fraction: float = 0.2
    test_fraction: float = 0.1
    seed: int = 0
    keep_difficult: bool = False
    voc_origin: int | None = None  # voc: 1 (the devkit's 1-based pixel indices, the default) or 0 (0-based tools)
    force: bool = False
    base: str | None = None  # an existing version data/<base>/ the source is added to (its splits kept)
    reserved: tuple[str, ...] = ()  # version names an import may not take (the generator's)


def _read(req: ImportRequest) -> Source:
    if req.format != "voc":
        _no_flag(req, "--voc-origin", req.voc_origin is not None)
    if req.format == "coco":
        _no_flag(req, "--source", req.source)
        return read_coco(req.images, req.annotations)
    if req.format == "voc":
        _no_flag(req, "--source", req.source)
        if len(req.annotations) != 1:
            raise DatasetError("--format voc needs one --annotations DIR (the folder of .xml files)")
        return read_voc(req.images, req.annotations[0], req.keep_difficult, _voc_origin(req))
    if req.format == "yolo":
        _no_flag(req, "--images", req.images)
        _no_flag(req, "--annotations", req.annotations)
        return read_yolo(req.source)
    raise DatasetError(f"unknown import format {req.format!r}; choose one of {', '.join(FORMATS)}")


def _with_base(source: Source, req: ImportRequest) -> tuple[Source, int]:
    """The source's images added to the version `req.base`, and how many images the base gave. The base's images
    keep their splits and its classes come first; the source's images without a split are spread over
    train/val/test by the same hash rule (a few images may all go to train). For the next data version after
    reviewing the service's inbox."""
    assert req.base is not None
    base_dir = req.root / req.base
    if not (base_dir / "images").is_dir():
        raise DatasetError(f"--base {req.base}: {base_dir} is not a dataset version (no images/ folder)")
    base = read_yolo(base_dir)
    raise_if_problems(base.problems, f"the base version {base_dir}")
    loose = [im for im in source.images if im.split is None]
    for split, images in make_splits(loose, req.val_fraction, req.test_fraction, req.seed, complete=False).items():
        for im in images:
            im.split = split
    for im in source.images:
        im.where = f"{req.format} source: {im.where}"
    merged = Source(req.format, [*base.images, *source.images], [*base.classes])
    merged.classes += [c for c in source.classes if c not in merged.classes]
    merged.problems = [*base.problems, *source.problems]
    merged.dropped = dict(source.dropped)
    merged.notes = [*source.notes, f"added to {len(base.images)} image(s) of {base_dir}, whose splits are kept"]
    return merged, len(base.images)


def _voc_origin(req: ImportRequest) -> int:
    return 1 if req.voc_origin is None else req.voc_origin


def _no_flag(req: ImportRequest, flag: str, value: object) -> None:
    if value:
        raise DatasetError(f"{flag} is not used by --format {req.format}")


def import_dataset(req: ImportRequest) -> dict[str, Any]:
    """Import the source `req` describes as `req.root / req.version`; return the report (also in the manifest)."""
    if not _VERSION.match(req.version):
        raise DatasetError(f"--version {req.version!r}: use letters, digits, '_', '.' and '-' (e.g. my-data-v1)")
    dest = req.root / req.version
    if req.version in req.reserved:
        # Not even with --force: the pipeline's data@<version> stage owns data/<version>, so DVC could not track it.
        stage = f"data@{req.version}"
        raise DatasetError(f"--version {req.version} is a generator version (dvc.yaml: {stage}); use another name")
    if dest.exists() and not req.force:
        raise DatasetError(f"{dest} already exists; pass --force to replace it")
    check_fractions(req.val_fraction, req.test_fraction)
    selection = parse_selection(req.classes)
    source = _read(req)
    raise_if_problems(source.problems, f"the {req.format} source")
    base_images = 0
    if req.base is not None:
        source, base_images = _with_base(source, req)
    if not source.images:
        raise DatasetError(f"the {req.format} source has no images")
    class_map = build_class_map(source, selection)
    per_class = count_objects(source)
    splits, how = assign_splits(source.images, req.val_fraction, req.test_fraction, req.seed)
    raise_if_problems(output_collisions(splits), f"the {req.format} source")
    ids = class_map.ids
    negatives = {s: sum(1 for im in ims if not any(b.cls in ids for b in im.boxes)) for s, ims in splits.items()}
    dropped = dict(source.dropped)
    unselected = {n: per_class.get(n, 0) for n in class_map.dropped}
    if unselected:
        dropped["unselected classes"] = sum(unselected.values())
    source_info = {
        "format": req.format,
        "images": str(req.images.resolve()) if req.images else None,
        "annotations": [str(p.resolve()) for p in req.annotations],
        "source": str(req.source.resolve()) if req.source else None,
    }
    empty = [n for n in class_map.names if per_class.get(n, 0) == 0]
    details: dict[str, Any] = {
        "classes": {
            "source": list(class_map.source),
            "selected": selection,
            "class_map": class_map.as_manifest(),
            "dropped": unselected,
            "empty": empty,
        },
        "splits": {"from": how, "val_fraction": req.val_fraction, "test_fraction": req.test_fraction, "seed": req.seed},
        "dropped_objects": dropped,
        "negatives": negatives,
        "notes": source.notes,
    }
    if req.base is not None:
        details["base"] = {"version": req.base, "images": base_images, "added": len(source.images) - base_images}
    if req.format == "coco":
        details["crowd"] = "dropped"
    if req.format == "voc":
        details["difficult"] = "kept" if req.keep_difficult else "dropped"
        details["voc_origin"] = _voc_origin(req)
    manifest = write_version(dest, splits, class_map, {"source": source_info, "import": details}, force=req.force)
    for name, n in unselected.items():
        log.warning("class %r not selected: %d object(s) dropped", name, n)
    for name in empty:
        log.warning("class %r has no objects in the imported data", name)
    for note in source.notes:
        log.info("%s", note)
    summary = {k: manifest[k] for k in ("version", "names", "counts", "objects_per_class", "sha256")}
    return {"dataset": str(dest), **summary, "source": source_info, **details}
