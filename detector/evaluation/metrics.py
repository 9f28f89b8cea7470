"""Detection mAP in pure numpy, a line-for-line port of Ultralytics' validator metrics.

Why a port and not `ultralytics.utils.metrics`: evaluation runs next to the inference runtime, which ships without
torch or ultralytics. Why line-for-line: numbers must equal what `yolo val` prints for the same predictions, so
each step mirrors its Ultralytics counterpart (named in the docstrings), down to float32 IoU, float32 thresholds
and the sort used. Any "improvement" here would make our mAP incomparable with training-time mAP.

Pipeline per image (`DetectionValidator.update_metrics`): IoU of every GT against every prediction, greedy
matching in confidence order at ten IoU thresholds (0.50:0.95:0.05) -> a boolean TP matrix. At the end
(`ap_per_class`): per class, cumulative TP/FP over all images sorted by confidence, COCO 101-point AP at each
threshold, and precision/recall taken at the confidence that maximises the smoothed mean F1 over classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.runtime.boxes import box_iou
from detector.runtime.detections import Detections

__all__ = ["IOU_THRESHOLDS", "ClassMatches", "DetectionMetrics", "MetricsResult", "box_iou", "match_predictions"]

# float32 like Ultralytics' `torch.linspace(0.5, 0.95, 10)`: an IoU of exactly 0.55 compares against 0.55000001.
IOU_THRESHOLDS: npt.NDArray[np.float32] = np.linspace(0.5, 0.95, 10, dtype=np.float32)
_AP_X = np.linspace(0.0, 1.0, 101)  # COCO 101-point recall grid
_CURVE_X = np.linspace(0.0, 1.0, 1000)  # confidence grid of the P/R/F1 curves
# numpy 2 renamed trapz; both compute the same trapezoid rule.
_TRAPZ: Callable[..., Any] = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined,unused-ignore]


@dataclass(frozen=True)
class MetricsResult:
    """Dataset-level detection metrics, as Ultralytics' `DetMetrics.box` reports them.

    `precision`/`recall` are class means at the single confidence that maximises the mean F1 (not at `conf`).
    Classes without ground truth are left out of every mean, as Ultralytics does.
    """

    map50: float
    map50_95: float
    precision: float
    recall: float
    per_class_ap50_95: dict[str, float] = field(default_factory=dict)
    n_images: int = 0
    n_instances: int = 0
    # Each class's precision and recall at the same (mean-F1) confidence the means above are taken at.
    per_class_precision: dict[str, float] = field(default_factory=dict)
    per_class_recall: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"mAP50": self.map50, "mAP50-95": self.map50_95, "precision": self.precision, "recall": self.recall}

    def per_class(self) -> dict[str, dict[str, float]]:
        """`{class: {"AP50-95", "precision", "recall"}}` for every class with ground truth in the split."""
        return {
            name: {
                "AP50-95": ap,
                "precision": self.per_class_precision.get(name, 0.0),
                "recall": self.per_class_recall.get(name, 0.0),
            }
            for name, ap in self.per_class_ap50_95.items()
        }


def match_predictions(
    pred_cls: npt.NDArray[Any], gt_cls: npt.NDArray[Any], iou: npt.NDArray[np.float32]
) -> npt.NDArray[np.bool_]:
    """`(n, 10)` TP matrix; port of `BaseValidator.match_predictions` (the default, scipy-free path).

    `iou` is `(m gt, n pred)` with predictions in descending confidence. Each prediction, best first, claims the
    unclaimed same-class GT with the highest IoU, separately at each threshold, so a GT is matched at most once per
    threshold and duplicates become false positives.
    """
    n_thr = len(IOU_THRESHOLDS)
    correct = np.zeros((len(pred_cls), n_thr), dtype=bool)
    iou = iou * (gt_cls[:, None] == pred_cls)  # zero IoU with wrong-class GT
    matched = np.zeros((iou.shape[0], n_thr), dtype=bool)  # GT claimed at each threshold
    cols = np.arange(n_thr)
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS.min()).any(0)):
        available = np.where(matched, 0, iou[:, j, None])  # IoU with each unclaimed GT, per threshold
        k = available.argmax(0)
        correct[j] = available[k, cols] >= IOU_THRESHOLDS
        matched[k, cols] |= correct[j]
    return correct


def smooth(y: npt.NDArray[np.float64], f: float = 0.05) -> npt.NDArray[np.float64]:
    """Box filter whose width is fraction `f` of `len(y)` (Ultralytics' `smooth`)."""
    nf = round(len(y) * f * 2) // 2 + 1  # odd number of taps
    pad = np.ones(nf // 2)
    yp = np.concatenate((pad * y[0], y, pad * y[-1]), 0)
    out: npt.NDArray[np.float64] = np.convolve(yp, np.ones(nf) / nf, mode="valid")
    return out


def compute_ap(recall: npt.NDArray[np.float64], precision: npt.NDArray[np.float64]) -> float:
    """COCO 101-point interpolated AP of one PR curve (Ultralytics' `compute_ap`)."""
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # precision envelope
    return float(_TRAPZ(np.interp(_AP_X, mrec, mpre), _AP_X))


@dataclass(frozen=True)
class _PerClass:
    classes: npt.NDArray[np.int64]  # classes that have ground truth, ascending
    ap: npt.NDArray[np.float64]  # (nc, 10)
    p: npt.NDArray[np.float64]  # (nc,) at the max-mean-F1 confidence
    r: npt.NDArray[np.float64]


def ap_per_class(
    tp: npt.NDArray[np.bool_],
    conf: npt.NDArray[Any],
    pred_cls: npt.NDArray[Any],
    target_cls: npt.NDArray[Any],
    eps: float = 1e-16,
) -> _PerClass:
    """Per-class AP at each IoU threshold plus max-F1 precision/recall (Ultralytics' `ap_per_class`, no plots)."""
    # Default (unstable) argsort on purpose: Ultralytics uses it, and ties in confidence must break the same way.
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    nc = len(classes)
    ap = np.zeros((nc, tp.shape[1]))
    p_curve, r_curve = np.zeros((nc, len(_CURVE_X))), np.zeros((nc, len(_CURVE_X)))
    for ci, c in enumerate(classes):
        i = pred_cls == c
        if i.sum() == 0:  # GT but no predictions: AP, P and R stay 0
            continue
        fpc = (1 - tp[i]).cumsum(0)
        tpc = tp[i].cumsum(0)
        recall = tpc / (nt[ci] + eps)
        precision = tpc / (tpc + fpc)
        # np.interp needs increasing x; confidence decreases along the sorted predictions, hence the negations.
        r_curve[ci] = np.interp(-_CURVE_X, -conf[i], recall[:, 0], left=0)
        p_curve[ci] = np.interp(-_CURVE_X, -conf[i], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j] = compute_ap(recall[:, j], precision[:, j])
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = int(smooth(f1_curve.mean(0), 0.1).argmax()) if nc else 0
    return _PerClass(classes.astype(np.int64), ap, p_curve[:, best], r_curve[:, best])


@dataclass(frozen=True)
class ClassMatches:
    """One class's predictions over a whole split, best first, with whether each is a true positive at IoU 0.5.

    What a confidence threshold for that class trades off: keeping the predictions above it gives
    `tp[:k].sum()` true positives out of `k` predictions, against `n_gt` objects.
    """

    confidence: npt.NDArray[np.float64]  # (n,) descending
    tp: npt.NDArray[np.bool_]  # (n,) matched a same-class object at IoU >= 0.5
    n_gt: int


class DetectionMetrics:
    """Accumulates per-image matches; `compute()` gives the dataset's mAP, P and R exactly as Ultralytics would.

    Call `update` once per image, including images with no predictions (their GT are misses) and images with no
    GT (their predictions are false positives of their class).
    """

    def __init__(self, names: dict[int, str] | None = None) -> None:
        self.names: dict[int, str] = dict(names or {})
        self._tp: list[npt.NDArray[np.bool_]] = []
        self._conf: list[npt.NDArray[Any]] = []
        self._pred_cls: list[npt.NDArray[np.int64]] = []
        self._target_cls: list[npt.NDArray[np.int64]] = []

    @property
    def n_images(self) -> int:
        return len(self._tp)

    def update(self, pred: Detections, gt_xyxy: npt.NDArray[Any], gt_cls: npt.NDArray[Any]) -> None:
        """Add one image: its predictions and its `(m, 4)` xyxy GT boxes (same pixel space) with `(m,)` classes."""
        gt_xyxy = np.asarray(gt_xyxy, dtype=np.float32).reshape(-1, 4)
        gt_cls = np.asarray(gt_cls).astype(np.int64).reshape(-1)
        if len(gt_xyxy) != len(gt_cls):
            raise ValueError(f"gt_xyxy has {len(gt_xyxy)} boxes but gt_cls has {len(gt_cls)} classes")
        if not self.names and pred.names:
            self.names = dict(pred.names)
        # Matching is greedy in confidence order, which Ultralytics gets from NMS; sort so any input order works
        # (stable, so NMS-ordered input is left exactly as is).
        order = np.argsort(-pred.confidence, kind="stable")
        boxes, conf, cls = pred.xyxy[order], pred.confidence[order], pred.class_id[order].astype(np.int64)
        if len(cls) and len(gt_cls):
            tp = match_predictions(cls, gt_cls, box_iou(gt_xyxy, boxes))
        else:
            tp = np.zeros((len(cls), len(IOU_THRESHOLDS)), dtype=bool)
        self._tp.append(tp)
        # Ultralytics stores float32 confidences but a float64 `np.zeros(0)` for images without predictions, which
        # promotes the concatenation; mirrored so the confidence sort (and its tie-breaking) sees the same dtype.
        self._conf.append(conf.astype(np.float32) if len(conf) else np.zeros(0))
        self._pred_cls.append(cls)
        self._target_cls.append(gt_cls)

    def class_matches(self) -> dict[int, ClassMatches]:
        """Per class (every class with a prediction or an object), its predictions in descending confidence with
        their IoU-0.5 matches: the input of per-class confidence thresholds (`detector.evaluation.thresholds`)."""
        if not self._tp:
            return {}
        tp = np.concatenate(self._tp)[:, 0]
        conf = np.concatenate(self._conf).astype(np.float64)
        pred_cls = np.concatenate(self._pred_cls)
        target_cls = np.concatenate(self._target_cls)
        out: dict[int, ClassMatches] = {}
        for c in np.union1d(np.unique(pred_cls), np.unique(target_cls)).astype(np.int64):
            mine = pred_cls == c
            order = np.argsort(-conf[mine], kind="stable")
            out[int(c)] = ClassMatches(conf[mine][order], tp[mine][order], int((target_cls == c).sum()))
        return out

    def compute(self) -> MetricsResult:
        if not self._tp:
            return MetricsResult(0.0, 0.0, 0.0, 0.0, {}, 0, 0)
        target_cls = np.concatenate(self._target_cls)
        res = ap_per_class(
            np.concatenate(self._tp), np.concatenate(self._conf), np.concatenate(self._pred_cls), target_cls
        )
        has_gt = len(res.classes) > 0  # Ultralytics' `Metric` reports 0.0 when no class has ground truth
        class_names = [self.names.get(int(c), str(int(c))) for c in res.classes]
        return MetricsResult(
            map50=float(res.ap[:, 0].mean()) if has_gt else 0.0,
            map50_95=float(res.ap.mean()) if has_gt else 0.0,
            precision=float(res.p.mean()) if has_gt else 0.0,
            recall=float(res.r.mean()) if has_gt else 0.0,
            per_class_ap50_95={n: float(a) for n, a in zip(class_names, res.ap.mean(1), strict=True)},
            n_images=self.n_images,
            n_instances=len(target_cls),
            per_class_precision={n: float(p) for n, p in zip(class_names, res.p, strict=True)},
            per_class_recall={n: float(r) for n, r in zip(class_names, res.r, strict=True)},
        )
