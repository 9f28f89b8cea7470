from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.requests import Request

from api.deps import ReadyServiceDep
from api.params import ClassesQuery
from api.pipeline import group_key, predict_image
from api.schemas import Base64ImageRequest, PredictionResponse, error_responses, example_image_base64, schema_ref
from api.timing import timing_headers

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
                            },
                            "classes": {"type": "string", "description": "Optional class filter, e.g. circle,0"},
                        },
                    }
                },
                "application/json": {
                    "schema": schema_ref(Base64ImageRequest, mode="validation"),
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
        "of the image as sent, after applying its EXIF orientation. Concurrent requests are micro-batched. "
        "`classes=` keeps only those classes. The `Server-Timing` header repeats `timings_ms`."
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
    classes: ClassesQuery = None,
) -> JSONResponse:
    prediction = await predict_image(request, service, group_key(service, conf, iou, max_det), classes)
    headers = timing_headers(prediction.timings_ms, **{"X-Batch-Size": str(prediction.outcome.batch_size)})
    return JSONResponse(prediction.payload(), headers=headers)
