"""The class filter (`classes=circle,square` or `classes=0,1`): parse it against a model's names, apply it.

Applied after NMS and `max_det`, to each image's detections: the backend call is the same whatever the filter, so
requests with different filters still share one micro-batch.
"""

from __future__ import annotations

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


def filter_classes(detections: Detections, class_ids: frozenset[int] | None) -> Detections:
    """Only the detections whose class is in `class_ids` (None: all of them)."""
    if class_ids is None:
        return detections
    keep = np.isin(detections.class_id, np.fromiter(class_ids, np.int64, len(class_ids)))
    return Detections(detections.xyxy[keep], detections.confidence[keep], detections.class_id[keep], detections.names)
