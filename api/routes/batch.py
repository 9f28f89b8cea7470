"""`POST /predict/batch`: several images in one multipart request (repeated field `files`).

Every image goes through the same micro-batching queue as `/predict` (one queue slot each, all submitted at once,
so they normally share backend calls). A bad image does not fail the others: its entry is
`{"error": {"status", "detail"}}` with the status `/predict` would have answered for it alone. The body limit
(`max_upload_mb`) applies to the whole request, and at most `inference.server.max_batch_files` parts are accepted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from api.batching import GroupKey, Reservation
from api.deps import ReadyServiceDep
from api.errors import (
    UnprocessableError,
    status_for,
)
from api.inputs import require_multipart
from api.params import ClassesQuery, ConfPerClassQuery, ConfQuery, IouQuery, MaxDetQuery
from api.pipeline import class_conf_key, class_filter, group_key
from api.schemas import error_responses
from api.schemas_features import BatchResponse
from api.timing import timing_headers
from detector.errors import DetectorError
from detector.runtime.classes import filter_classes
from detector.runtime.payload import prediction_payload

router = APIRouter(tags=["inference"])


def _item_error(status: int, detail: str) -> dict[str, Any]:
    return {"error": {"status": status, "detail": detail}}


def _openapi_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "JPEG, PNG, BMP or WebP images (repeat the field)",
                            },
                            "classes": {"type": "string", "description": "Optional class filter, e.g. circle,0"},
                        },
                    }
                }
            },
        }
    }


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
    openapi_extra=_openapi_body(),
    responses=error_responses(400, 413, 415, 422, 503, 504),
)
async def predict_batch(
    request: Request,
    service: ReadyServiceDep,
    conf: ConfQuery = None,
    iou: IouQuery = None,
    max_det: MaxDetQuery = None,
    classes: ClassesQuery = None,
    conf_per_class: ConfPerClassQuery = None,
) -> JSONResponse:
    started = time.perf_counter()
    key = group_key(service, conf, iou, max_det, conf_per_class)
    wanted = class_filter(service, classes)
    require_multipart(request, "one 'files' part per image (for one image as JSON use /predict)")
    limit = service.config.inference.server.max_batch_files
    reservations: list[Reservation] = []
    try:
        try:
            # Uploads are bounded apart from the inference queue: the body is received under an upload place, and
            # queue places are taken only once every image has arrived.
            with service.uploads.place():
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
            if classes is None and isinstance(form.get("classes"), str):
                wanted = class_filter(service, str(form.get("classes")))
            if conf_per_class is None and isinstance(form.get("conf_per_class"), str):
                key = (*key[:3], class_conf_key(service, str(form.get("conf_per_class"))))
            if not uploads:
                hint = " (use 'files', not 'file')" if "file" in form else ""
                raise UnprocessableError(
                    f"no images: send one multipart part named 'files' per image, 1 to {limit} of them{hint}"
                )
            datas: list[bytes | dict[str, Any]] = []
            for i, upload in enumerate(uploads):
                if not isinstance(upload, UploadFile):
                    datas.append(_item_error(400, f"files[{i}] is a text field, not a file upload (filename=...)"))
                    continue
                data = await upload.read()
                datas.append(data if data else _item_error(400, f"files[{i}] is empty (0 bytes)"))
        finally:
            await form.close()
        t_read = time.perf_counter()
        for _ in range(len(datas)):
            reservations.append(service.batcher.reserve(bulk=True))  # 503 + Retry-After at once when it is full
        results = await asyncio.gather(
            *(
                _one(service, data, reservation, key, wanted, t_read)
                for data, reservation in zip(datas, reservations, strict=True)
            )
        )
    finally:
        for reservation in reservations:
            reservation.release()
    timings = {"read": round((t_read - started) * 1e3, 3), "total": round((time.perf_counter() - started) * 1e3, 3)}
    return JSONResponse(
        {"results": list(results), "timings_ms": timings},
        headers=timing_headers(timings, **{"X-Batch-Files": str(len(results))}),
    )


async def _one(
    service: Any,
    data: bytes | dict[str, Any],
    reservation: Reservation,
    key: GroupKey,
    wanted: frozenset[int] | None,
    t_read: float,
) -> dict[str, Any]:
    """One image of the batch: its `/predict` body, or its error entry (the reservation is released here)."""
    try:
        if isinstance(data, dict):
            return data
        try:
            # The pixels stay counted in the decode budget until this image's entry is built.
            async with service.decoded(data, full_size=True, bulk=True) as decoded:
                t_decode = time.perf_counter()
                outcome = await service.batcher.submit(
                    reservation, decoded.pixels, key, service.config.inference.server.request_timeout_s
                )
                service.shadow.offer(decoded.pixels, outcome, key)
                timings = {
                    "decode": round((t_decode - t_read) * 1e3, 3),
                    **outcome.timings_ms,
                    "total": round((time.perf_counter() - t_read) * 1e3, 3),
                }
                size = decoded.pixels.shape
                return prediction_payload(filter_classes(outcome.detections, wanted), size, outcome.model, timings)
        except DetectorError as exc:
            status = status_for(exc)
            if status >= 500:
                raise
            return _item_error(status, str(exc))
    finally:
        reservation.release()
