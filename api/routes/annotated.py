"""`POST /predict/annotated`: the same inputs as `/predict`, answered with the image drawn (image/jpeg).

The JSON comes back too, two ways: always in compact headers (`X-Detection-Count`, `Server-Timing`), and in full
with `?include=json`, which answers `application/json`: the `/predict` body plus `annotated_image.base64`. The
full detections are not put in a header because proxies cap header sizes (nginx: 4-8 KB by default, ~80 boxes).
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.requests import Request

from api.deps import OptionsDep, ReadyPipelineDep
from api.docs import query_parameters
from api.inference.pipeline import DRAWN
from api.routes.encoding import BodyResponse, timing_headers
from api.routes.predict import openapi_body
from api.schemas import AnnotatedPredictionResponse, PredictionQuery, error_responses, schema_ref
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
    openapi_extra={**openapi_body(), **query_parameters(PredictionQuery)},
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
    pipeline: ReadyPipelineDep,
    options: OptionsDep,
    include: Annotated[
        Literal["json"] | None, Query(description="`json`: answer JSON with the detections and the image (base64)")
    ] = None,
) -> Response:
    started = time.perf_counter()
    data, options = await pipeline.read_image(request, options)
    # Drawn on every pixel (DRAWN decodes full size); the pixels stay counted in the budget until the JPEG is made.
    async with pipeline.predicting(data, options, DRAWN, started) as prediction:
        drawn = await pipeline.decoder.run(draw_detections, prediction.image, prediction.detections)
        jpeg = await pipeline.decoder.run(encode_jpeg, drawn)
        height, width = drawn.shape[:2]
    headers = timing_headers(
        prediction.timings_ms,
        **{"X-Batch-Size": str(prediction.result.batch_size), "X-Detection-Count": str(len(prediction.detections))},
    )
    if include != "json":
        return Response(jpeg, media_type="image/jpeg", headers=headers)
    image = {"media_type": "image/jpeg", "width": width, "height": height, "base64": base64.b64encode(jpeg).decode()}
    answer = AnnotatedPredictionResponse.body(
        prediction.detections, prediction.size, prediction.model, prediction.timings_ms, annotated_image=image
    )
    return BodyResponse(answer, headers=headers)
