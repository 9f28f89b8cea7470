from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.requests import Request

from api.deps import ReadyServiceDep
from api.errors import UnprocessableError
from api.inputs import body_kind, read_image_bytes
from api.schemas import Base64ImageRequest, PredictionResponse, error_responses, example_image_base64
from api.service import to_sent_image
from detector.runtime.payload import prediction_payload

router = APIRouter(tags=["inference"])


def _openapi_body() -> dict[str, Any]:
    """Both accepted bodies, documented by hand because the route reads the body itself (see api/inputs.py)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "A JPEG (MPO: its first frame), PNG, BMP or WebP image",
                            }
                        },
                    }
                },
                "application/json": {
                    "schema": Base64ImageRequest.model_json_schema(),
                    "examples": {
                        "png": {
                            "summary": "A 64x64 PNG (a circle and a square)",
                            "value": {"image_base64": example_image_base64()},
                        },
                        "data_url": {
                            "summary": "The same image as a data URL",
                            "value": {"image_base64": "data:image/png;base64," + example_image_base64()},
                        },
                    },
                },
            },
        }
    }


@router.post(
    "/predict",
    response_model=PredictionResponse,
    summary="Detect objects in one image",
    description=(
        'Send the image as multipart field `file` **or** as JSON `{"image_base64": "..."}`. Boxes are in pixels '
        "of the image as sent, after applying its EXIF orientation. Concurrent requests are micro-batched."
    ),
    openapi_extra=_openapi_body(),
    responses=error_responses(400, 408, 413, 415, 422, 500, 503, 504),
)
async def predict(
    request: Request,
    service: ReadyServiceDep,
    conf: Annotated[float | None, Query(ge=0, le=1, description="Confidence threshold (default: config)")] = None,
    iou: Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold (default: config)")] = None,
    max_det: Annotated[int | None, Query(ge=1, description="Most boxes returned (default: config)")] = None,
) -> JSONResponse:
    started = time.perf_counter()
    inf = service.config.inference
    limit = inf.server.max_det_limit
    if max_det is not None and max_det > limit:
        raise UnprocessableError(f"query parameter max_det: must be at most {limit} (got {max_det})")
    key = (
        inf.conf if conf is None else conf,
        inf.iou if iou is None else iou,
        inf.max_det if max_det is None else max_det,
    )
    kind = body_kind(request)  # 400/415 from the headers alone, before taking any place

    with service.uploads.place():  # uploads are bounded apart from the queue: slow senders never hold queue places
        data = await read_image_bytes(request, kind, service.max_image_bytes)
    t_read = time.perf_counter()
    reservation = service.batcher.reserve()  # 503 + Retry-After at once when the queue is full
    try:
        # Thread pool, within the shared pixel budget: decoding never blocks the event loop nor grows without bound.
        async with service.decoded(data) as image:
            t_decode = time.perf_counter()
            outcome = await service.batcher.submit(reservation, image.pixels, key, inf.server.request_timeout_s)
            detections = to_sent_image(outcome.detections, image)
    finally:
        reservation.release()
    timings = {
        "read": round((t_read - started) * 1e3, 3),
        "decode": round((t_decode - t_read) * 1e3, 3),
        **outcome.timings_ms,
        "total": round((time.perf_counter() - started) * 1e3, 3),
    }
    payload = prediction_payload(detections, (image.height, image.width), outcome.model, timings)
    return JSONResponse(payload, headers={"X-Batch-Size": str(outcome.batch_size)})
