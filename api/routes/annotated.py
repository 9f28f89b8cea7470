"""`POST /predict/annotated`: the same inputs as `/predict`, answered with the image drawn (image/jpeg).

The JSON comes back too, two ways: always in compact headers (`X-Detection-Count`, `Server-Timing`), and in full
with `?include=json`, which answers `application/json`: the `/predict` body plus `annotated_image.base64`. The
full detections are not put in a header because proxies cap header sizes (nginx: 4-8 KB by default, ~80 boxes).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from api.deps import ReadyServiceDep
from api.params import ClassesQuery, ConfPerClassQuery, ConfQuery, IouQuery, MaxDetQuery
from api.pipeline import group_key, predicting
from api.routes.predict import _openapi_body
from api.schemas import error_responses, schema_ref
from api.schemas_features import AnnotatedPredictionResponse
from api.timing import timing_headers
from detector.runtime.draw import draw_detections, encode_jpeg

router = APIRouter(tags=["inference"])


@router.post(
    "/predict/annotated",
    summary="Detect objects and get the image back with them drawn",
    description=(
        "Takes the same body and query parameters as `/predict`. Answers `image/jpeg`: the image as sent (EXIF "
        "orientation applied, same width and height) with each box, class name and confidence drawn, one colour "
        "per class. Headers: `X-Detection-Count`, `Server-Timing` (the stage timings). With `include=json` the "
        "answer is instead JSON: the `/predict` body plus `annotated_image` (the JPEG, base64)."
    ),
    openapi_extra=_openapi_body(),
    response_class=Response,
    responses={
        200: {
            "description": "The drawn image (or, with include=json, the detections plus the drawn image)",
            "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": schema_ref(AnnotatedPredictionResponse)},
            },
        },
        **error_responses(400, 413, 415, 422, 503, 504),
    },
)
async def predict_annotated(
    request: Request,
    service: ReadyServiceDep,
    conf: ConfQuery = None,
    iou: IouQuery = None,
    max_det: MaxDetQuery = None,
    classes: ClassesQuery = None,
    conf_per_class: ConfPerClassQuery = None,
    include: Annotated[
        Literal["json"] | None, Query(description="`json`: answer JSON with the detections and the image (base64)")
    ] = None,
) -> Response:
    key = group_key(service, conf, iou, max_det, conf_per_class)
    # Drawn on every pixel (full_size); the pixels stay counted in the decode budget until the JPEG is made.
    async with predicting(request, service, key, classes, full_size=True) as prediction:
        assert prediction.image is not None  # full_size keeps the pixels
        # Drawing and JPEG encoding are CPU work: the decode pool, never the event loop.
        loop = asyncio.get_running_loop()
        drawn = await loop.run_in_executor(
            service.decode_pool, draw_detections, prediction.image, prediction.detections
        )
        jpeg = await loop.run_in_executor(service.decode_pool, encode_jpeg, drawn)
        height, width = drawn.shape[:2]
    headers = timing_headers(
        prediction.timings_ms,
        **{"X-Batch-Size": str(prediction.outcome.batch_size), "X-Detection-Count": str(len(prediction.detections))},
    )
    if include == "json":
        body = prediction.payload()
        body["annotated_image"] = {
            "media_type": "image/jpeg",
            "width": width,
            "height": height,
            "base64": base64.b64encode(jpeg).decode("ascii"),
        }
        return JSONResponse(body, headers=headers)
    return Response(jpeg, media_type="image/jpeg", headers=headers)
