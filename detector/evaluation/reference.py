"""The trained `.pt`'s own boxes and validation numbers, from Ultralytics: the reference every export is held to.

The one module of `detector.evaluation` that imports ultralytics (lazily, inside the functions); the rest of the
package stays numpy-only and runs wherever the inference runtime does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detector.evaluation.evaluate import list_images
from detector.runtime.detections import Detections


def pt_detections(
    weights: Path, dataset_dir: Path, split: str, imgsz: int, conf: float, iou: float = 0.7, max_det: int = 300
) -> list[Detections]:
    """`YOLO(weights).predict` on every image of `split` (sorted as `list_images` sorts them), on the CPU, at the
    exported model's input size: one `Detections` per image, in original-image pixels."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    names = {int(k): str(v) for k, v in model.names.items()}
    out: list[Detections] = []
    images = [str(p) for p in list_images(dataset_dir, split)]
    for start in range(0, len(images), 16):
        for result in model.predict(
            images[start : start + 16],
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            max_det=max_det,
            device="cpu",
            verbose=False,
        ):
            boxes: Any = result.boxes
            out.append(
                Detections(
                    xyxy=boxes.xyxy.numpy().astype(np.float32).reshape(-1, 4),
                    confidence=boxes.conf.numpy().astype(np.float32).reshape(-1),
                    class_id=boxes.cls.numpy().astype(np.int64).reshape(-1),
                    names=names,
                )
            )
    return out
