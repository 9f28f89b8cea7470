"""One image through the service: the steps `/predict`, `/predict/annotated` and `/predict/batch` share.

Thresholds and the class filter are checked before the body is read; then the image is read, decoded in the decode
pool and run through the micro-batcher, like every other request. The class filter is applied to the result (after
NMS), so it never splits a micro-batch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.requests import Request

from api.batching import ClassConfKey, GroupKey, Outcome
from api.errors import BadRequestError, UnprocessableError
from api.inputs import body_kind, read_image_input
from api.service import Service, to_sent_image
from detector.runtime import Detections
from detector.runtime.classes import filter_classes, parse_class_conf, parse_classes, resolve_class_conf
from detector.runtime.drift import Observation
from detector.runtime.images import DecodedImage
from detector.runtime.payload import prediction_payload


@dataclass(frozen=True)
class Prediction:
    image: npt.NDArray[np.uint8] | None  # the decoded pixels at full size; None after a reduced decode
    size: tuple[int, int]  # (height, width) of the image as sent
    detections: Detections  # in pixels of the image as sent, class filter applied
    outcome: Outcome
    timings_ms: dict[str, float]

    def payload(self) -> dict[str, Any]:
        """The `/predict` response body."""
        return prediction_payload(self.detections, self.size, self.outcome.model, self.timings_ms)


def group_key(
    service: Service,
    conf: float | None,
    iou: float | None,
    max_det: int | None,
    conf_per_class: str | None = None,
) -> GroupKey:
    """The thresholds for this request (config defaults filled in); 422 for a max_det over the server's limit or a
    bad `conf_per_class`. Without `conf`, and with `inference.class_thresholds`, conf stays None: the model applies
    its own per-class thresholds (requests batch together only under the same thresholds, see api/batching.py)."""
    inf = service.config.inference
    limit = inf.server.max_det_limit
    if max_det is not None and max_det > limit:
        raise UnprocessableError(f"query parameter max_det: must be at most {limit} (got {max_det})")
    return (
        (None if inf.class_thresholds else inf.conf) if conf is None else conf,
        inf.iou if iou is None else iou,
        inf.max_det if max_det is None else max_det,
        class_conf_key(service, conf_per_class),
    )


def class_conf_key(service: Service, spec: str | dict[str, Any] | None) -> ClassConfKey:
    """`conf_per_class` (`circle:0.4,2:0.6`, or a JSON object) against the served model's classes, as a batching
    key; () when absent; 422 naming an unknown class or a bad value."""
    if spec is None:
        return ()
    names = model_names(service)
    chosen = parse_class_conf(spec, names) if isinstance(spec, str) else resolve_class_conf(spec, names)
    return tuple(sorted(chosen.items()))


def model_names(service: Service) -> dict[int, str]:
    model = service.slot.current
    names = model.info.get("names", {}) if model is not None else {}
    return {int(k): str(v) for k, v in names.items()}


def class_filter(service: Service, spec: str | list[Any] | None) -> frozenset[int] | None:
    """Parsed `classes` (names or ids) against the served model; None for no filter; 422 when unknown or empty."""
    return None if spec is None else parse_classes(spec, model_names(service))


async def predict_image(
    request: Request,
    service: Service,
    key: GroupKey,
    classes: str | None,
) -> Prediction:
    """`predicting` for a route that needs only the detections: the pixels go back to the budget on return."""
    async with predicting(request, service, key, classes, collected=True) as prediction:
        return prediction


def collect(
    service: Service,
    data: bytes,
    decoded: DecodedImage,
    detections: Detections,
    outcome: Outcome,
    key: GroupKey,
    seen: Observation | None,
) -> None:
    """Offer an answered `/predict` image to the inbox and the shadow challenger; both work off the request path.
    `detections`: in pixels of the image as sent, before the client's class filter."""
    inbox = service.inbox
    size = (decoded.height, decoded.width)
    reasons: list[str] = []
    if inbox.enabled:
        reasons = inbox.reasons(detections, service.drift.outliers(seen, inbox.settings.drift_outlier_share))
        inbox.offer(data, size, detections, outcome.model, reasons)
    on_disagree = None
    if inbox.enabled and inbox.settings.shadow_disagreement and not reasons:  # not kept yet: maybe on disagreement

        def on_disagree() -> None:
            inbox.offer(data, size, detections, outcome.model, ("shadow_disagreement",))

    service.shadow.offer(decoded.pixels, outcome, key, on_disagree)


def trace_attributes(outcome: Outcome, decoded: DecodedImage, detections: Detections) -> dict[str, Any]:
    """What a `detector.predict` span says about the prediction (inference.tracing)."""
    model = outcome.model
    return {
        "detector.model.version": str(model.get("version", "")),
        "detector.backend": str(model.get("backend", "")),
        "detector.batch_size": outcome.batch_size,
        "detector.image.width": decoded.width,
        "detector.image.height": decoded.height,
        "detector.detections": len(detections),
    }


@asynccontextmanager
async def predicting(
    request: Request,
    service: Service,
    key: GroupKey,
    classes: str | None,
    full_size: bool = False,
    collected: bool = False,
) -> AsyncIterator[Prediction]:
    """Read, decode and detect the one image of this request (multipart `file` or JSON `image_base64`).

    The body is received under an upload place (bounded apart from the queue, so slow senders never hold queue
    places); a queue place is reserved once it has arrived and released when inference is done. Decoding shares
    the server's pixel budget and, in `decode_mode: reduced`, may decode big JPEGs at the model's size;
    `full_size=True` (drawing on the image) always decodes every pixel and keeps them in `Prediction.image`.
    The decoded pixels stay counted in the budget until the `with` block ends, so a route that uses
    `Prediction.image` (draws, encodes) does it inside the block, while its array is still accounted for.
    `collected=True` offers the answered image to the inbox (api/inbox.py) and the shadow challenger (api/shadow.py)
    (`/predict`; not `/predict/annotated`, which draws on the pixels).
    """
    started = time.perf_counter()
    started_ns = time.time_ns()  # where the trace's stage spans begin (inference.tracing)
    wanted = class_filter(service, classes)  # 422 before anything is read
    kind = body_kind(request)  # 400/415 from the headers alone, before taking any place
    with service.uploads.place():
        body = await read_image_input(request, kind, service.max_image_bytes)
    if body.classes is not None:
        if classes is not None:
            raise BadRequestError("give the class filter once: in the query or in the body, not both")
        wanted = class_filter(service, body.classes)
    if body.conf_per_class is not None:
        if key[3]:
            raise BadRequestError("give conf_per_class once: in the query or in the body, not both")
        key = (*key[:3], class_conf_key(service, body.conf_per_class))
    t_read = time.perf_counter()
    timeout = service.config.inference.server.request_timeout_s
    reservation = service.batcher.reserve()  # 503 + Retry-After at once when the queue is full
    try:
        async with service.decoded(body.data, full_size=full_size) as decoded:
            t_decode = time.perf_counter()
            try:
                outcome = await service.batcher.submit(reservation, decoded.pixels, key, timeout)
            finally:
                reservation.release()  # the queue place is for inference only, not for what the route does next
            detections = to_sent_image(outcome.detections, decoded)  # unchanged after a full-size decode
            timings = {
                "read": round((t_read - started) * 1e3, 3),
                "decode": round((t_decode - t_read) * 1e3, 3),
                **outcome.timings_ms,
                "total": round((time.perf_counter() - started) * 1e3, 3),
            }
            sent = filter_classes(detections, wanted)
            service.metrics.observe_stages(timings)
            if service.spans.enabled:
                service.spans.record(started_ns, timings, trace_attributes(outcome, decoded, detections))
            service.metrics.observe_detections(sent.class_names())
            size = (decoded.height, decoded.width)
            seen = service.drift.observe(decoded.pixels, size, detections)  # all classes: the filter is the client's
            if collected:
                collect(service, body.data, decoded, detections, outcome, key, seen)
            yield Prediction(decoded.pixels if full_size else None, size, sent, outcome, timings)
    finally:
        reservation.release()  # when the decode failed before inference (releasing twice is a no-op)
