"""Test media made on the fly: a short clip in which one real object the quick model detects moves across."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.runtime import Detector
from detector.runtime.images import read_image


def confident_scene(model_path: Path, dataset_dir: Path) -> tuple[np.ndarray, str]:
    """The RGB test image with the quick model's most confident detection away from the left/right edges (the
    model is trained for one minute: most of its detections are weak), and that detection's class name."""
    best: tuple[float, np.ndarray, str] | None = None
    with Detector.load(model_path, "onnxruntime") as det:
        for path in sorted((dataset_dir / "images" / "test").glob("*.jpg"))[:20]:
            image = read_image(path)
            found = det.predict(image)
            for box, score, name in zip(found.xyxy, found.confidence, found.class_names(), strict=True):
                if box[0] > 16 and box[2] < image.shape[1] - 16 and (best is None or score > best[0]):
                    best = (float(score), image, name)
    assert best is not None and best[0] > 0.5, f"the quick model finds nothing confident enough ({best and best[0]})"
    return best[1], best[2]


def write_moving_clip(scene: np.ndarray, path: Path, frames: int = 30, shift: int = 48, fps: float = 15) -> Path:
    """`frames` frames of `scene` panned `shift` px sideways (mirrored at the border): its objects move across."""
    bgr = np.ascontiguousarray(scene[:, :, ::-1])
    h, w = bgr.shape[:2]
    wide = cv2.copyMakeBorder(bgr, 0, 0, shift // 2, shift - shift // 2, cv2.BORDER_REFLECT)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        off = round(i * shift / max(frames - 1, 1))
        writer.write(np.ascontiguousarray(wide[:, off : off + w]))
    writer.release()
    return path
