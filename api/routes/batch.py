"""`POST /predict/batch`: several images in one multipart request (repeated field `files`).

Every image goes through the same micro-batching queue as `/predict` (one queue slot each, all submitted at once,
so they normally share backend calls). A bad image does not fail the others: its entry is
`{"error": {"status", "detail"}}` with the status `/predict` would have answered for it alone. The body limit
(`max_upload_mb`) applies to the whole request, and at most `inference.server.max_batch_files` parts are accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from api.admission.bodies import require_multipart
from api.deps import OptionsDep, ReadyPipelineDep
from api.docs import query_parameters, request_body
from api.errors import ApiError, UnprocessableError, status_for
from api.inference.batching import Reservation
from api.inference.pipeline import BATCH_ITEM, Options, Pipeline
from api.routes.encoding import BodyResponse, timing_headers
from api.schemas import (
    BatchForm,
    BatchItemError,
    BatchResponse,
    ItemError,
    PredictionQuery,
    PredictionResponse,
    error_responses,
)
from detector.errors import DetectorError

router = APIRouter(tags=["inference"])


def _form_option(form: FormData, name: str, request: Request) -> str | None:
    """A text field of the form that gives an option, unless the query already does (the query's wins)."""
    value = form.get(name)
    return value if isinstance(value, str) and name not in request.query_params else None


def _item_error(status: int, detail: str) -> BatchItemError:
    return BatchItemError(error=ItemError(status=status, detail=detail))


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    summary="Detect objects in several images",
    description=(
        "Repeat the multipart field `files` once per image (at most `inference.server.max_batch_files`; the "
        'upload limit applies to the whole body). Answers `{"results": [...]}` in the order sent: each entry is '
        'the `/predict` body for that image, or `{"error": {"status": 415, "detail": "..."}}` for an image '
        "that could not be used. Query parameters as for `/predict`, applied to every image."
    ),
    openapi_extra={**request_body(BatchForm), **query_parameters(PredictionQuery)},
    responses=error_responses(400, 413, 415, 422, 503, 504),
)
async def predict_batch(request: Request, pipeline: ReadyPipelineDep, options: OptionsDep) -> BodyResponse:
    started = time.perf_counter()
    require_multipart(request, "one 'files' part per image (for one image as JSON use /predict)")
    limit = pipeline.server.max_batch_files
    # Wait in line for room in the bulk share before the body is read (then 503 + Retry-After).
    await pipeline.wait_for_room(lambda: pipeline.batcher.has_room(bulk=True))
    try:
        # The body is received under an upload place; queue places are taken once every image has arrived.
        with pipeline.receiving():
            form = await request.form(max_files=limit, max_fields=16)
    except HTTPException as exc:
        if exc.status_code == 400 and "Too many files" in str(exc.detail):
            raise UnprocessableError(
                f"too many images: at most {limit} 'files' parts per request (inference.server.max_batch_files); "
                "split them over several requests"
            ) from None
        raise
    try:
        uploads = form.getlist("files")
        options = pipeline.with_body_options(
            options, _form_option(form, "classes", request), _form_option(form, "conf_per_class", request)
        )
        if not uploads:
            hint = " (use 'files', not 'file')" if "file" in form else ""
            raise UnprocessableError(
                f"no images: send one multipart part named 'files' per image, 1 to {limit} of them{hint}"
            )
        images: list[bytes | BatchItemError] = []
        for i, upload in enumerate(uploads):
            if not isinstance(upload, UploadFile):
                images.append(_item_error(400, f"files[{i}] is a text field, not a file upload (filename=...)"))
                continue
            data = await upload.read()
            images.append(data if data else _item_error(400, f"files[{i}] is empty (0 bytes)"))
    finally:
        await form.close()
    t_read = time.perf_counter()
    # Every image's queue place at once, before any is decoded: 503 + Retry-After when they do not all fit.
    places = await pipeline.reserve(sum(isinstance(image, bytes) for image in images), BATCH_ITEM)
    try:
        unused = iter(places)
        results = await asyncio.gather(*(_one(pipeline, image, options, t_read, unused) for image in images))
    finally:
        for place in places:  # releasing twice is a no-op
            place.release()
    timings = {"read": round((t_read - started) * 1e3, 3), "total": round((time.perf_counter() - started) * 1e3, 3)}
    return BodyResponse(
        {"results": results, "timings_ms": timings},  # the `BatchResponse` shape
        headers=timing_headers(timings, **{"X-Batch-Files": str(len(results))}),
    )


async def _one(
    pipeline: Pipeline, image: bytes | BatchItemError, options: Options, t_read: float, places: Iterator[Reservation]
) -> dict[str, Any] | BatchItemError:
    """One image of the batch: its `/predict` body, or its error entry with the status `/predict` would give."""
    if isinstance(image, BatchItemError):
        return image
    try:
        async with pipeline.predicting(image, options, BATCH_ITEM, t_read, next(places)) as prediction:
            timings = {k: v for k, v in prediction.timings_ms.items() if k != "read"}  # read: the whole request's
            return PredictionResponse.body(prediction.detections, prediction.size, prediction.model, timings)
    except (ApiError, DetectorError) as exc:  # this image's own fault (a tile larger than it): its entry only
        status = exc.status if isinstance(exc, ApiError) else status_for(exc)
        if status >= 500:
            raise
        return _item_error(status, str(exc))
