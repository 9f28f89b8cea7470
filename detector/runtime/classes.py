"""The class filter (`classes=circle,square` or `classes=0,1`): parse it against a model's names, apply it.

Applied after NMS and `max_det`, to each image's detections: the backend call is the same whatever the filter, so
requests with different filters still share one micro-batch.

Also per-class confidence thresholds (`conf_per_class=circle:0.4,2:0.6`), named the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from detector.errors import InvalidInputError
from detector.runtime.detections import Detections


def _listing(names: Mapping[int, str], shown: int = 30) -> str:
    items = sorted(names.items())
    more = f" and {len(items) - shown} more ({len(items)} in all)" if len(items) > shown else ""
    return ", ".join(f"{i}={_cut(n)}" for i, n in items[:shown]) + more


def _cut(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width] + "..."


def _few(items: list[str], shown: int = 5) -> str:
    """The first `shown` entries (each cut short) and a count: 200,000 unknown names must not come back."""
    more = f" and {len(items) - shown} more ({len(items)} in all)" if len(items) > shown else ""
    return ", ".join(repr(_cut(u)) for u in items[:shown]) + more


def parse_classes(spec: str | Iterable[str | int], names: Mapping[int, str]) -> frozenset[int]:
    """Class ids for a comma-separated string (or a list) of class names or ids; InvalidInputError (422 over
    HTTP) for an empty filter or an unknown entry, listing the model's classes."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    items = [s for s in items if s]
    if not items:
        raise InvalidInputError(
            f"classes: the filter is empty; give class names or ids separated by commas (model classes: "
            f"{_listing(names)}), or leave it out to get every class"
        )
    by_name = {n.lower(): i for i, n in names.items()}
    ids: set[int] = set()
    unknown: list[str] = []
    for item in items:
        if item.lstrip("-").isdigit() and int(item) in names:
            ids.add(int(item))
        elif item.lower() in by_name:
            ids.add(by_name[item.lower()])
        else:
            unknown.append(item)
    if unknown:
        raise InvalidInputError(
            f"classes: unknown class {_few(unknown)}; the model's classes are "
            f"{_listing(names)} (use names or ids, comma-separated)"
        )
    return frozenset(ids)


MAX_CLASS_CONF_ITEMS = 1000  # entries in one conf_per_class: more is a mistake (or an attack), not a request


def class_id(item: str | int, names: Mapping[int, str]) -> int | None:
    """The class id `item` names (an id, or a name in any case); None when the model has no such class."""
    text = str(item).strip()
    if text.lstrip("-").isdigit() and int(text) in names:
        return int(text)
    lowered = text.lower()
    return next((i for i, n in names.items() if n.lower() == lowered), None)


def parse_class_conf(spec: str, names: Mapping[int, str]) -> dict[int, float]:
    """`circle:0.4,2:0.6` -> {class id: conf}; InvalidInputError (422 over HTTP) naming the first bad entry."""
    pairs: dict[str, float] = {}
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if len(items) > MAX_CLASS_CONF_ITEMS:
        raise InvalidInputError(f"conf_per_class: {len(items)} entries; at most {MAX_CLASS_CONF_ITEMS}")
    for item in items:
        name, sep, value = item.rpartition(":")
        try:
            pairs[name.strip()] = float(value) if sep and name.strip() else math.nan
        except ValueError:
            pairs[name.strip()] = math.nan
        if math.isnan(pairs[name.strip()]):
            raise InvalidInputError(f"conf_per_class: {_few([item], 1)} is not CLASS:CONF (e.g. circle:0.4)")
    return resolve_class_conf(pairs, names)


def resolve_class_conf(spec: Mapping[str, float] | Mapping[int, float], names: Mapping[int, str]) -> dict[int, float]:
    """{class name or id: conf} -> {class id: conf}; InvalidInputError for an empty mapping, an unknown class
    (listing the model's classes) or a confidence outside [0, 1]."""
    if not spec:
        raise InvalidInputError("conf_per_class is empty; give CLASS:CONF pairs, e.g. circle:0.4")
    if len(spec) > MAX_CLASS_CONF_ITEMS:
        raise InvalidInputError(f"conf_per_class: {len(spec)} entries; at most {MAX_CLASS_CONF_ITEMS}")
    out: dict[int, float] = {}
    unknown: list[str] = []
    for key, value in spec.items():
        cid = class_id(key, names)
        if cid is None:
            unknown.append(str(key))
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInputError(
                f"conf_per_class: {_cut(str(key))!r} must be a number in [0, 1], got {_cut(str(value))}"
            )
        out[cid] = float(value)
    if unknown:
        raise InvalidInputError(
            f"conf_per_class: unknown class {_few(unknown)}; the model's classes are {_listing(names)}"
        )
    return out


def filter_classes(detections: Detections, class_ids: frozenset[int] | None) -> Detections:
    """Only the detections whose class is in `class_ids` (None: all of them)."""
    if class_ids is None:
        return detections
    keep = np.isin(detections.class_id, np.fromiter(class_ids, np.int64, len(class_ids)))
    return Detections(detections.xyxy[keep], detections.confidence[keep], detections.class_id[keep], detections.names)
