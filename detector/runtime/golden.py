"""Golden images: a few validation images and the boxes the model gave them when it was exported, carried in the
model's metadata, so the service can check that it still sees what it saw (at load, and on a period).

A check runs each image through the model with the thresholds recorded with it (explicit ones, so the service's own
threshold settings do not matter) and matches the answer against the recorded boxes with the shared matching rule
(`detector.runtime.agreement`: same class, IoU >= `iou`, one to one), counting only clear boxes (`golden_problem`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.runtime.agreement import match_boxes
from detector.runtime.detections import Detections
from detector.runtime.images import decode_image

MARGIN = 0.1  # how far above the threshold a box's confidence must be to count (see golden_problem)


@dataclass(frozen=True)
class GoldenImage:
    data: bytes  # the image file's bytes, decoded as the service decodes a request
    boxes: npt.NDArray[np.float32]  # (n, 4) xyxy in the image's pixels
    class_id: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float32]
    thresholds: dict[str, Any]  # the predict_batch keywords it was answered with (conf, iou, max_det)

    def expected(self, names: dict[int, str]) -> Detections:
        return Detections(self.boxes, self.confidence, self.class_id, names)

    def pixels(self) -> npt.NDArray[np.uint8]:
        return decode_image(self.data)

    def to_dict(self) -> dict[str, Any]:
        rows = (
            np.column_stack([self.boxes, self.class_id, self.confidence]).round(3).tolist() if len(self.boxes) else []
        )
        return {"image": base64.b64encode(self.data).decode(), "boxes": rows, "thresholds": self.thresholds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GoldenImage:
        rows = np.asarray(data["boxes"], np.float64).reshape(-1, 6)
        return cls(
            base64.b64decode(data["image"]),
            rows[:, :4].astype(np.float32),
            rows[:, 4].astype(np.int64),
            rows[:, 5].astype(np.float32),
            dict(data.get("thresholds", {})),
        )


def _subset(detections: Detections, keep: npt.NDArray[np.bool_]) -> Detections:
    return Detections(detections.xyxy[keep], detections.confidence[keep], detections.class_id[keep], detections.names)


def golden_problem(
    golden: Sequence[GoldenImage],
    answers: Sequence[Detections],
    names: dict[int, str],
    iou: float = 0.5,
    min_match_rate: float = 0.9,
) -> str | None:
    """None when the model's `answers` (one per golden image, each predicted with the image's `thresholds`) still
    find the recorded boxes; else why not (the first image that fails, and how).

    Only clear boxes count: those at least MARGIN above the confidence threshold. A recorded clear box must be
    found again (recall), and a clear box found now must have been recorded (precision), each at `min_match_rate`
    or better per image. A box near the threshold may come or go between backends and precisions (ONNX Runtime at
    export, OpenVINO or TensorRT in the service) without anything being wrong; a model that lost a class, a
    corrupted engine or a wrong pre-processing loses clear boxes."""
    for i, (image, found) in enumerate(zip(golden, answers, strict=True)):
        clear = float(image.thresholds.get("conf") or 0.25) + MARGIN
        expected = image.expected(names)
        required = _subset(expected, expected.confidence >= clear)
        strong = _subset(found, found.confidence >= clear)
        recalled, _ = match_boxes(required, found, iou)
        _, recorded = match_boxes(expected, strong, iou)
        recall = len(recalled) / len(required) if len(required) else 1.0
        precision = len(recorded) / len(strong) if len(strong) else 1.0
        if min(recall, precision) < min_match_rate:
            return (
                f"golden image {i + 1} of {len(golden)}: {len(recalled)} of {len(required)} clear boxes found again, "
                f"{len(strong) - len(recorded)} clear boxes not seen at export (recall {recall:.2f}, precision "
                f"{precision:.2f}, < {min_match_rate:.2f})"
            )
    return None


def golden_from_metadata(entries: Sequence[dict[str, Any]]) -> list[GoldenImage]:
    return [GoldenImage.from_dict(entry) for entry in entries]
