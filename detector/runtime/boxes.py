"""Box geometry shared by evaluation (mAP), parity checks and shadow scoring."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def box_iou(box1: npt.NDArray[Any], box2: npt.NDArray[Any], eps: float = 1e-7) -> npt.NDArray[np.float32]:
    """`(n, m)` IoU of xyxy boxes; float32 with the same operation order as Ultralytics' `box_iou`, so the mAP
    computed from it (`detector.evaluation.metrics`) equals `yolo val`'s bit for bit."""
    a = box1.astype(np.float32)[:, None, :]
    b = box2.astype(np.float32)[None, :, :]
    wh = (np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])).clip(0)
    wh1, wh2 = a[..., 2:] - a[..., :2], b[..., 2:] - b[..., :2]
    inter = wh[..., 0] * wh[..., 1]
    union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter + np.float32(eps)
    out: npt.NDArray[np.float32] = (inter / union).astype(np.float32, copy=False)
    return out
