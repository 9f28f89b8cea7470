"""YOLO detection folders, as Ultralytics, Roboflow and this project write them. Labels are read with the project's
one YOLO module (`detector.data.yolo_format`), so a line is valid here exactly when the validator accepts it.

Layouts recognised, in this order:
- `images/<split>/` + `labels/<split>/` (Ultralytics, this project);
- `<split>/images/` + `<split>/labels/` (Roboflow; `valid` is val);
- `images/` + `labels/` with no splits (the splits are then made).
Class names come from `data.yaml` (`names:` list or mapping), else `classes.txt` or `obj.names` (one per line).
An image without a label file is a negative (no objects).
"""

from __future__ import annotations

from pathlib import Path

from detector.data.importers.source import Source, SourceBox, SourceImage, check_image, require_dir, split_of
from detector.data.validate import load_names
from detector.data.yolo_format import read_label_file
from detector.errors import DatasetError


def _names(root: Path) -> list[str]:
    if (root / "data.yaml").is_file():
        names = load_names(root)
        return [names[i] for i in range(len(names))]
    for name in ("classes.txt", "obj.names"):
        if (root / name).is_file():
            found = [ln.strip() for ln in (root / name).read_text().splitlines() if ln.strip()]
            if found:
                return found
    raise DatasetError(f"{root}: no class names (a data.yaml with `names:`, or classes.txt / obj.names)")


def _folders(root: Path) -> list[tuple[str | None, Path, Path]]:
    """(split, images folder, labels folder) of every split the source has."""
    found: dict[str, tuple[Path, Path]] = {}
    # (split, images, labels): Ultralytics' images/<split>/ ("train2017" counts), then Roboflow's <split>/images/.
    candidates = [
        *[(split_of(d.name), d, root / "labels" / d.name) for d in sorted((root / "images").glob("*")) if d.is_dir()],
        *[(split_of(d.name, exact=True), d / "images", d / "labels") for d in sorted(root.iterdir()) if d.is_dir()],
    ]
    for split, images, labels in candidates:
        if split is not None and images.is_dir() and split not in found:
            found[split] = (images, labels)
    if found:
        return [(s, *found[s]) for s in ("train", "val", "test") if s in found]
    if (root / "images").is_dir():
        return [(None, root / "images", root / "labels")]
    raise DatasetError(
        f"{root}: no YOLO layout found (images/<split>/ and labels/<split>/, <split>/images/ and <split>/labels/, "
        "or images/ and labels/)"
    )


def read_yolo(source_dir: Path | None) -> Source:
    root = require_dir(source_dir, "--source")
    classes = _names(root)
    source = Source("yolo", [], classes)
    for split, images_dir, labels_dir in _folders(root):
        files = sorted(p for p in images_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        stems: dict[str, Path] = {}
        for path in files:
            rel = path.relative_to(root).as_posix()
            _, error = check_image(path)
            if error:
                source.problem(rel, error)
                continue
            if path.stem in stems:
                source.problem(rel, f"duplicate file name: {stems[path.stem].name} has the same stem (one label file)")
                continue
            stems[path.stem] = path
            image = SourceImage(path.resolve(), path.name, rel, split)
            source.images.append(image)
            label = labels_dir / f"{path.stem}.txt"
            try:
                labels, problems = read_label_file(label, len(classes))
            except (OSError, UnicodeDecodeError) as exc:
                source.problem(label.relative_to(root).as_posix(), f"cannot read label file ({exc})")
                continue
            for line, message in problems:
                source.problem(f"{label.relative_to(root).as_posix()}:{line}", message)
            image.boxes = [SourceBox(classes[lb.cls], lb.cx, lb.cy, lb.w, lb.h) for lb in labels]
        if labels_dir.is_dir():
            for label in sorted(labels_dir.glob("*.txt")):
                if label.stem not in stems and not any(p.stem == label.stem for p in files):
                    source.problem(label.relative_to(root).as_posix(), f"label file without an image in {images_dir}")
    return source
