from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from api.deps import OptionsDep, ReadyPipelineDep
from api.docs import query_parameters, request_body
from api.inference.pipeline import SINGLE
from api.routes.encoding import BodyResponse, timing_headers
from api.schemas import (
    Base64ImageRequest,
    ImageForm,
    PredictionQuery,
    PredictionResponse,
    error_responses,
    example_image_base64,
)

router = APIRouter(tags=["inference"])


def openapi_body() -> dict[str, Any]:
    """The accepted bodies (the pipeline reads the body itself, api/admission/bodies.py)."""
    image = example_image_base64()
    examples = {
        "png": {"summary": "A 64x64 PNG (a circle and a square)", "value": {"image_base64": image}},
        "data_url": {
            "summary": "The same image as a data URL",
            "value": {"image_base64": f"data:image/png;base64,{image}"},
        },
    }
    return request_body(ImageForm, Base64ImageRequest, examples, raw="image/*")


@router.post(
    "/predict",
    response_model=PredictionResponse,
    summary="Detect objects in one image",
    description=(
        'Send the image as multipart field `file`, as JSON `{"image_base64": "..."}`, **or** as the body itself '
        "(`Content-Type: image/jpeg`, any `image/*`, or `application/octet-stream`; `classes` and `conf_per_class` "
        "then go in the query). Boxes are in pixels of the image as sent, after applying its EXIF orientation. "
        "Concurrent requests are micro-batched. "
        "`classes=` keeps only those classes. Confidence thresholds: the model's per-class ones (see `GET /model`) "
        "unless `conf` is given (one threshold for every class); `conf_per_class` sets chosen classes'. "
        "The `Server-Timing` header repeats `timings_ms`."
    ),
    openapi_extra={**openapi_body(), **query_parameters(PredictionQuery)},
    responses=error_responses(400, 408, 413, 415, 422, 500, 503, 504),
)
async def predict(request: Request, pipeline: ReadyPipelineDep, options: OptionsDep) -> BodyResponse:
    started = time.perf_counter()
    data, options = await pipeline.read_image(request, options)
    async with pipeline.predicting(data, options, SINGLE, started) as prediction:
        answer = PredictionResponse.body(
            prediction.detections, prediction.size, prediction.model, prediction.timings_ms
        )
    batch_size = str(prediction.result.batch_size)
    return BodyResponse(answer, headers=timing_headers(prediction.timings_ms, **{"X-Batch-Size": batch_size}))
