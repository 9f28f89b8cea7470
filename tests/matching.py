"""Comparing two sets of detections box by box, one-to-one, for the parity tests (CPU backends vs Ultralytics,
TensorRT vs ONNX Runtime). One implementation, so every comparison counts unmatched boxes on both sides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Boxes = tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]  # xyxy (n, 4), confidence (n,), class id (n,)


@dataclass(frozen=True)
class Match:
    matched: int
    only_reference: int  # reference boxes with no partner on our side (missed)
    only_ours: int  # our boxes with no partner in the reference (extra)

    @property
    def agreement(self) -> float:
        """matched / all distinct boxes: 1.0 only when both sides found the same boxes, no more and no fewer."""
        total = self.matched + self.only_reference + self.only_ours
        if total == 0:
            raise ValueError("neither side found a box: nothing was compared")
        return self.matched / total

    def __add__(self, other: Match) -> Match:
        return Match(
            self.matched + other.matched,
            self.only_reference + other.only_reference,
            self.only_ours + other.only_ours,
        )


def iou(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    result: npt.NDArray[np.float64] = inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)
    return result


def match(ours: Boxes, reference: Boxes, iou_min: float, conf_tol: float) -> Match:
    """Greedy one-to-one matching, most confident reference box first: a partner has the same class, IoU >= iou_min
    and a confidence within conf_tol, and is used once."""
    o_xyxy, o_conf, o_cls = (np.asarray(v, np.float64) for v in ours)
    r_xyxy, r_conf, r_cls = (np.asarray(v, np.float64) for v in reference)
    n_ours, n_ref = len(o_conf), len(r_conf)
    if not n_ours or not n_ref:
        return Match(0, n_ref, n_ours)
    ious = iou(r_xyxy.reshape(-1, 4), o_xyxy.reshape(-1, 4))
    used = np.zeros(n_ours, bool)
    matched = 0
    for i in np.argsort(-r_conf, kind="stable"):
        ok = (ious[i] >= iou_min) & (o_cls == r_cls[i]) & (np.abs(o_conf - r_conf[i]) <= conf_tol) & ~used
        if ok.any():
            used[int(np.argmax(np.where(ok, ious[i], -1.0)))] = True
            matched += 1
    return Match(matched, n_ref - matched, n_ours - matched)


def match_all(ours: Sequence[Boxes], reference: Sequence[Boxes], iou_min: float, conf_tol: float) -> Match:
    total = Match(0, 0, 0)
    for a, b in zip(ours, reference, strict=True):
        total = total + match(a, b, iou_min, conf_tol)
    return total
