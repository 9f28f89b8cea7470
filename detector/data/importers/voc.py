"""Pascal VOC XML: one `Annotations/<id>.xml` per image (`filename`, `size`, `object`s with `name`, `difficult` and
`bndbox` xmin/ymin/xmax/ymax in pixels), splits in `ImageSets/Main/{train,val,test}.txt`.

Why not a library: `supervision`'s `DetectionDataset.from_pascal_voc` reads coordinates with `int()` (CVAT and
Label Studio write decimals), keeps `difficult` objects without saying so, reports no file or line and has no split
support. The format is small, so it is read here with the standard library (expat, for line numbers in messages).

Decisions:
- `difficult="1"` objects are dropped by default and counted, as Ultralytics' own VOC conversion (and darknet's
  `voc_label.py`) does: the VOC benchmark ignores them in evaluation, and YOLO labels have no ignore flag.
  `--keep-difficult` keeps them as ordinary objects instead.
- Coordinates follow the VOC devkit: `xmin`..`xmax` are 1-based pixel indices, both ends included, so a box from
  pixel 1 to pixel W covers the whole width (width = xmax - xmin + 1). In continuous coordinates from the image's
  top-left corner that is x0 = xmin - 1, y0 = ymin - 1, x1 = xmax, y1 = ymax, as detectron2's `pascal_voc.py`
  reads it and as the devkit's own evaluation measures boxes (`VOCevaldet.m`: `iw=bi(3)-bi(1)+1`).
  Labelling tools that write 0-based continuous coordinates instead are imported with `--voc-origin 0` (the
  coordinates are then taken as written): CVAT/Datumaro (`xmin = x`, `xmax = x + w` of its 0-based boxes, with
  decimals), Label Studio (`int(x% * width)`, `int((x% + w%) * width)`) and labelImg (its 0-based canvas
  coordinates truncated to integers, `xmin`/`ymin` raised to at least 1). Read with the wrong origin, boxes sit
  1 px off; a 0-based file read as 1-based usually also has an `xmin` or `ymin` of 0, which is reported with the
  hint to pass `--voc-origin 0`. Sources: the VOC2012 devkit's `VOCcode/VOCevaldet.m`; detectron2
  `detectron2/data/datasets/pascal_voc.py` ("a box with annotation (xmin=1, xmax=W) covers the whole image",
  then `bbox[0] -= 1.0; bbox[1] -= 1.0`); Datumaro `plugins/voc_format/converter.py` (`_write_xml_bbox`);
  label-studio-converter `converter.py` (`convert_to_voc`); labelImg `libs/labelFile.py`
  (`convert_points_to_bnd_box`).
- Classes: the order of CVAT's `labelmap.txt` beside `Annotations/` when there is one (an object whose name it
  lacks is reported); otherwise the order in which names first appear, reading the XML files sorted by name.
- Splits: `ImageSets/Main/{train,val,test}.txt` beside `Annotations/` (or beside the images folder) when present;
  `trainval.txt` counts as train. Annotation files no list names are left out and counted. Without ImageSets the
  splits are made.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from detector.data.importers.source import (
    PIXEL_TOLERANCE,
    Source,
    SourceImage,
    check_image,
    pixel_box,
    require_dir,
)
from detector.errors import DatasetError

_SPLIT_FILES = {"train": ("train.txt", "trainval.txt"), "val": ("val.txt",), "test": ("test.txt",)}
ORIGINS = (1, 0)  # the first pixel's index in <bndbox>: 1 as the VOC devkit defines it, 0 as CVAT and others write


def _parse(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """The XML tree and each element's line: xml.etree keeps no line numbers, so build the tree from expat events."""
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    with path.open("rb") as f:
        parser.ParseFile(f)
    return builder.close(), lines


def _text(el: ET.Element | None, tag: str) -> str | None:
    child = el.find(tag) if el is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _labelmap(annotations_dir: Path) -> list[str] | None:
    for folder in (annotations_dir, annotations_dir.parent):
        path = folder / "labelmap.txt"
        if path.is_file():  # CVAT: "# label:color_rgb:parts:actions", then "name:r,g,b::" per label
            lines = [ln.split(":", 1)[0].strip() for ln in path.read_text().splitlines()]
            return [n for n in lines if n and not n.startswith("#")]
    return None


def _split_lists(source: Source, annotations_dir: Path, images_dir: Path) -> dict[str, str] | None:
    """stem -> split from ImageSets/Main, or None when there is no such folder."""
    for root in (annotations_dir.parent, images_dir.parent):
        main = root / "ImageSets" / "Main"
        if main.is_dir():
            break
    else:
        return None
    assigned: dict[str, str] = {}
    for split, names in _SPLIT_FILES.items():
        for name in names:
            path = main / name
            if not path.is_file() or (name == "trainval.txt" and (main / "train.txt").is_file()):
                continue
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                stem = line.split()[0] if line.split() else ""
                if not stem:
                    continue
                if stem in assigned and assigned[stem] != split:
                    source.problem(f"{path}:{n}", f"{stem!r} is also listed in the {assigned[stem]} split")
                assigned[stem] = split
    if not assigned:
        return None
    source.notes.append(f"splits from {main}")
    return assigned


def read_voc(
    images_dir: Path | None, annotations_dir: Path | None, keep_difficult: bool = False, origin: int = 1
) -> Source:
    """`origin`: 1 reads `<bndbox>` as the devkit's 1-based inclusive pixel indices, 0 as 0-based continuous
    coordinates (see the module docstring)."""
    if origin not in ORIGINS:
        raise DatasetError(f"--voc-origin {origin}: use 1 (the VOC devkit's 1-based pixels) or 0 (0-based, e.g. CVAT)")
    images_dir = require_dir(images_dir, "--images")
    annotations_dir = require_dir(annotations_dir, "--annotations")
    xml_files = sorted(annotations_dir.glob("*.xml"))
    if not xml_files:
        raise DatasetError(f"--annotations {annotations_dir}: no .xml files in that folder")
    source = Source("voc", [], [])
    source.notes.append(
        "<bndbox> read as 1-based pixel indices (the VOC devkit's convention; --voc-origin 0 for 0-based tools)"
        if origin == 1
        else "<bndbox> read as 0-based coordinates (--voc-origin 0)"
    )
    labelmap = _labelmap(annotations_dir)
    source.classes = list(labelmap or [])
    splits = _split_lists(source, annotations_dir, images_dir)
    names: dict[str, Path] = {}
    listed = set()
    for path in xml_files:
        split = None
        if splits is not None:
            if path.stem not in splits:
                source.count_dropped("not in ImageSets")
                continue
            split = splits[path.stem]
            listed.add(path.stem)
        _read_file(source, path, images_dir, split, labelmap, keep_difficult, origin, names)
    for stem in sorted(set(splits or ()) - listed):
        source.problem(f"ImageSets/Main: {stem!r}", f"listed, but there is no {annotations_dir / (stem + '.xml')}")
    if source.dropped.get("difficult"):
        source.notes.append(f"dropped {source.dropped['difficult']} difficult object(s) (--keep-difficult keeps them)")
    if source.dropped.get("not in ImageSets"):
        source.notes.append(f"left out {source.dropped['not in ImageSets']} annotation file(s) no ImageSets list names")
    return source


def _read_file(
    source: Source,
    path: Path,
    images_dir: Path,
    split: str | None,
    labelmap: list[str] | None,
    keep_difficult: bool,
    origin: int,
    names: dict[str, Path],
) -> None:
    try:
        root, lines = _parse(path)
    except expat.ExpatError as exc:
        source.problem(f"{path}:{exc.lineno}", f"invalid XML ({expat.ErrorString(exc.code)})")
        return
    except OSError as exc:
        source.problem(str(path), f"cannot read ({exc})")
        return
    if root.tag != "annotation":
        source.problem(f"{path}:{lines[root]}", f"root element is <{root.tag}>, expected <annotation>")
        return
    file_name = _text(root, "filename") or next(
        (p.name for p in sorted(images_dir.glob(f"{path.stem}.*")) if p.is_file()), f"{path.stem}.jpg"
    )
    base = Path(file_name).name
    if base in names:
        source.problem(str(path), f"duplicate file name {base!r} (also in {names[base]})")
        return
    names[base] = path
    image = SourceImage((images_dir / base).resolve(), base, str(path), split)
    source.images.append(image)
    size, error = check_image(image.path)
    if error:
        source.problem(str(path), error)
    size_el = root.find("size")
    declared = (_number(_text(size_el, "width")), _number(_text(size_el, "height")))
    if size is not None and declared[0] and declared[1] and declared != (float(size[0]), float(size[1])):
        source.problem(
            f"{path}:{lines[size_el]}" if size_el is not None else str(path),
            f"<size> {declared[0]:g}x{declared[1]:g} differs from the image file's {size[0]}x{size[1]}",
        )
        size = None
    for obj in root.iter("object"):
        where = f"{path}:{lines[obj]}"
        name = _text(obj, "name")
        if not name:
            source.problem(where, "object without a <name>")
            continue
        where += f" (object {name!r})"
        if labelmap is not None and name not in labelmap:
            source.problem(where, f"class {name!r} is not in labelmap.txt ({', '.join(labelmap)})")
            continue
        if name not in source.classes:
            source.classes.append(name)
        if _text(obj, "difficult") == "1" and not keep_difficult:
            source.count_dropped("difficult")
            continue
        bndbox = obj.find("bndbox")
        coords = [_number(_text(bndbox, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        if any(c is None for c in coords):
            source.problem(where, "<bndbox> needs numeric xmin, ymin, xmax and ymax")
            continue
        if size is None:  # the image itself is already reported
            continue
        xmin, ymin, xmax, ymax = (float(c) for c in coords if c is not None)
        shown = f"xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g}"
        if origin == 1 and min(xmin, ymin) < 1 - PIXEL_TOLERANCE:
            source.problem(
                where,
                f"box ({shown}) starts before pixel 1, the first pixel in VOC's 1-based convention; if the tool "
                "that wrote this file counts pixels from 0 (CVAT, Label Studio, labelImg), import with --voc-origin 0",
            )
            continue
        # 1-based inclusive pixel indices -> continuous coordinates: pixel i spans [i - 1, i].
        shift = 1.0 if origin == 1 else 0.0
        box = pixel_box(source, where, name, (xmin - shift, ymin - shift, xmax, ymax), size, shown)
        if box is not None:
            image.boxes.append(box)
