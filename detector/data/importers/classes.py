"""Which source classes become which class ids: the source's order, or the `--classes a,b,c` selection and order."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from detector.data.importers.source import Source
from detector.errors import DatasetError


@dataclass(frozen=True)
class ClassMap:
    names: tuple[str, ...]  # output class names; the id is the position
    source: tuple[str, ...]  # the source's class names, in its order

    @property
    def ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def dropped(self) -> tuple[str, ...]:
        """Source classes left out by the selection."""
        return tuple(n for n in self.source if n not in self.names)

    def as_manifest(self) -> dict[str, int | None]:
        """Source class name -> output id (None: dropped)."""
        return {n: self.ids.get(n) for n in self.source}


def parse_selection(text: str | None) -> list[str] | None:
    """`"b, a"` -> ["b", "a"]; None or "" -> None (keep every class)."""
    if text is None or not text.strip():
        return None
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise DatasetError(f"--classes {text!r}: empty class name (give names separated by commas: a,b,c)")
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise DatasetError(f"--classes {text!r}: listed twice: {', '.join(dupes)}")
    return names


def build_class_map(source: Source, selection: list[str] | None) -> ClassMap:
    if not source.classes:
        raise DatasetError(f"the {source.format} source defines no classes")
    if selection is None:
        return ClassMap(tuple(source.classes), tuple(source.classes))
    unknown = [n for n in selection if n not in source.classes]
    if unknown:
        raise DatasetError(
            f"--classes: {', '.join(map(repr, unknown))} not in the source; "
            f"its classes are: {', '.join(source.classes)}"
        )
    return ClassMap(tuple(selection), tuple(source.classes))


def count_objects(source: Source) -> dict[str, int]:
    """Objects per source class name (after the reader's own drops: crowd, difficult)."""
    counts = dict.fromkeys(source.classes, 0)
    for image in source.images:
        for box in image.boxes:
            counts[box.cls] = counts.get(box.cls, 0) + 1
    return counts
