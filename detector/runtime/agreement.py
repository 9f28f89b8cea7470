"""How far two models' detections on the same images agree: box parity of an export against its `.pt`, and a
challenger's agreement with the served model on live traffic (shadow scoring) or on offline data.

One matching rule for both: per image, same-class pairs with IoU >= `iou` are matched greedily, highest IoU first,
each box at most once. Counts are kept per class of the reference (the served model, or the `.pt`), so a class the
candidate lost shows as that class's recall falling, not as a small dent in one overall number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.runtime.boxes import box_iou
from detector.runtime.detections import Detections


def match_boxes(
    reference: Detections, candidate: Detections, iou: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Indices `(ref_idx, cand_idx)` of matched pairs: same class, IoU >= `iou`, greedy by IoU, one-to-one."""
    if not len(reference) or not len(candidate):
        empty = np.zeros(0, np.int64)
        return empty, empty
    overlap = box_iou(reference.xyxy, candidate.xyxy)
    overlap = np.where(reference.class_id[:, None] == candidate.class_id[None, :], overlap, 0.0)
    rows, cols = np.nonzero(overlap >= iou)
    order = np.argsort(-overlap[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    pairs.sort()
    ref_idx = np.array([p[0] for p in pairs], np.int64)
    cand_idx = np.array([p[1] for p in pairs], np.int64)
    return ref_idx, cand_idx


@dataclass
class ClassAgreement:
    reference: int = 0  # boxes of this class the reference found
    candidate: int = 0  # boxes of this class the candidate found
    matched: int = 0

    @property
    def recall(self) -> float:
        """Share of the reference's boxes of this class the candidate found too (1.0 when the reference has none)."""
        return self.matched / self.reference if self.reference else 1.0

    @property
    def count_delta(self) -> int:
        return self.candidate - self.reference

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "matched": self.matched,
            "recall": round(self.recall, 6),
            "count_delta": self.count_delta,
        }


@dataclass
class Agreement:
    """Running agreement counts; `update()` per image, `as_dict()` for reports and `/model/shadow`."""

    iou: float = 0.5
    images: int = 0
    per_class: dict[str, ClassAgreement] = field(default_factory=dict)
    _conf_shift_sum: float = 0.0

    def update(self, reference: Detections, candidate: Detections) -> None:
        ref_idx, cand_idx = match_boxes(reference, candidate, self.iou)
        self.images += 1
        for name in reference.class_names():
            self._class(name).reference += 1
        for name in candidate.class_names():
            self._class(name).candidate += 1
        ref_names = reference.class_names()
        for r in ref_idx.tolist():
            self._class(ref_names[r]).matched += 1
        if len(ref_idx):
            shift = candidate.confidence[cand_idx].astype(np.float64) - reference.confidence[ref_idx]
            self._conf_shift_sum += float(shift.sum())

    def _class(self, name: str) -> ClassAgreement:
        return self.per_class.setdefault(name, ClassAgreement())

    @property
    def reference_boxes(self) -> int:
        return sum(c.reference for c in self.per_class.values())

    @property
    def candidate_boxes(self) -> int:
        return sum(c.candidate for c in self.per_class.values())

    @property
    def matched(self) -> int:
        return sum(c.matched for c in self.per_class.values())

    @property
    def match_rate(self) -> float:
        """Matched boxes over all boxes of both sides (2m / (r + c)): 1.0 only when every box of each has a twin,
        so both lost and extra boxes lower it. 1.0 when neither found anything."""
        total = self.reference_boxes + self.candidate_boxes
        return 2 * self.matched / total if total else 1.0

    @property
    def confidence_shift(self) -> float:
        """Mean candidate-minus-reference confidence over matched pairs (0.0 without pairs)."""
        return self._conf_shift_sum / self.matched if self.matched else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "iou": self.iou,
            "images": self.images,
            "reference_boxes": self.reference_boxes,
            "candidate_boxes": self.candidate_boxes,
            "matched": self.matched,
            "match_rate": round(self.match_rate, 6),
            "confidence_shift": round(self.confidence_shift, 6),
            "per_class": {name: c.as_dict() for name, c in sorted(self.per_class.items())},
        }
