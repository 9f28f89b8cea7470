"""Drawing detections on an image: boxes and "name confidence" labels, one colour per class id.

`supervision`'s BoxAnnotator and LabelAnnotator do the drawing: their labels use OpenCV's built-in Hershey font,
so nothing is downloaded or looked up on the system. The colour comes from the class id (not its position in the
list), so a class keeps its colour across images, frames and requests. Shared by `POST /predict/annotated`, the UI
(through that endpoint) and `detector predict --save` for videos.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.runtime.detections import Detections


@cache
def _annotators(thickness: int, text_scale: float) -> tuple[Any, Any]:
    import supervision as sv  # imported here: it pulls scipy, a few seconds the CLI's other commands need not pay

    palette = sv.ColorPalette.DEFAULT
    return (
        sv.BoxAnnotator(color=palette, thickness=thickness, color_lookup=sv.ColorLookup.CLASS),
        sv.LabelAnnotator(
            color=palette,
            color_lookup=sv.ColorLookup.CLASS,
            text_scale=text_scale,
            text_thickness=max(1, thickness // 2),
            text_padding=max(2, thickness * 2),
            smart_position=True,  # labels stay inside the image at its edges
        ),
    )


def preload() -> None:
    """Import the drawing library now (the service does it at start-up, off the request path)."""
    _annotators(2, 0.5)


def draw_detections(
    image: npt.NDArray[np.uint8], detections: Detections, track_ids: Sequence[int | None] | None = None
) -> npt.NDArray[np.uint8]:
    """A copy of the RGB `(H, W, 3)` image with boxes and labels (`#track` prepended when tracked)."""
    if len(detections) == 0:
        return np.ascontiguousarray(image.copy())
    import cv2

    # supervision draws in OpenCV's BGR order; cvtColor makes the copy (50x faster than a reversed numpy view).
    out = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    side = max(out.shape[:2])
    thickness = max(1, round(side / 320))  # visible on a 128 px frame and a 4000 px photo alike
    boxes, labels = _annotators(thickness, max(0.35, side / 1280))
    names = detections.class_names()
    text = [f"{n} {c:.2f}" for n, c in zip(names, detections.confidence, strict=True)]
    if track_ids is not None:
        text = [f"#{t} {s}" if t is not None else s for t, s in zip(track_ids, text, strict=True)]
    sv_dets = detections.to_supervision()
    out = boxes.annotate(out, sv_dets)
    out = labels.annotate(out, sv_dets, labels=text)
    return np.asarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int = 90) -> bytes:
    """RGB array -> JPEG bytes (full-resolution chroma: thin coloured lines stay sharp)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()
