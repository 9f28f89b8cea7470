from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep
from api.errors import scrub_paths
from api.schemas import HealthResponse

router = APIRouter(tags=["service"])


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Readiness: 200 once a model is loaded and warmed up, 503 before (and while shutting down)",
    responses={503: {"model": HealthResponse, "description": "Loading, failed or shutting down"}},
)
async def health(service: ServiceDep) -> JSONResponse:
    # Plain and async on purpose: it never waits for the model or the queue, so it answers even under overload.
    model = service.slot.current
    body = HealthResponse(
        status=service.status,
        backend=model.info.get("backend") if model else None,
        model_version=model.info.get("version") if model else None,
        detail=scrub_paths(service.error) or None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if service.ready else 503)
