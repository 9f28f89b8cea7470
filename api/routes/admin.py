from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.admission.auth import AUDIT_STATE
from api.deps import ServiceDep, require_admin
from api.errors import ApiError
from api.routes.model import model_info
from api.schemas import ReloadRequest, ReloadResponse, error_responses
from detector.errors import DetectorError

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Load another model without downtime",
    description=(
        "Loads and warms up the new model in a background thread while the current one keeps serving, then swaps "
        "them atomically: batches already running finish on the old model, which is closed afterwards. If the new "
        "model cannot be loaded the old one keeps serving and the answer (422) says why. Only `.onnx`/`.engine` "
        "files inside `inference.server.model_dir` (default: the initial model's folder) of at most `max_model_mb` "
        "are loaded; other paths get the same 422 whether or not they exist. Needs the `X-API-Key` header; "
        "disabled (404) when no `admin_api_key` is configured."
    ),
    responses=error_responses(401, 404, 409, 413, 415, 422, 503),
)
async def reload_model(request: Request, body: ReloadRequest, service: ServiceDep) -> ReloadResponse:
    started = time.perf_counter()
    backend = body.backend or service.config.inference.backend
    setattr(request.state, AUDIT_STATE, f"reload {body.model_path[:200]} ({backend})")  # for the audit line
    try:
        old, _ = await run_in_threadpool(service.reload, body.model_path, backend)
    except (DetectorError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status in (409, 503):  # busy or shutting down: as they are
            raise
        current = service.slot.current
        serving = f"still serving version {current.info.get('version')}" if current else "no model is serving"
        # The file is the client's choice here, so a model that fails to load is its 422, not a server fault.
        status = exc.status if isinstance(exc, ApiError) else 422
        raise ApiError.with_status(status, f"reload failed ({serving}): {exc}") from exc
    return ReloadResponse(
        status="reloaded",
        previous_version=str(old["version"]) if old else None,
        model=await model_info(service),
        load_s=round(time.perf_counter() - started, 3),
    )
