"""Probes. `/health` is the readiness answer with details (kept as it was for compose and the benchmarks);
`/readyz` is the same decision for Kubernetes' readiness probe; `/livez` only says the process still answers, so a
model that failed to load takes the pod out of the Service without restarting it in a loop. All three are plain
async handlers that never wait for the model or the queue, so they answer under overload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep
from api.errors import scrub_paths
from api.schemas import HealthResponse, LivenessResponse

router = APIRouter(tags=["service"])

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthResponse, "description": "Loading, failed or shutting down"}
}


def _readiness(service: ServiceDep) -> JSONResponse:
    model = service.slot.current
    body = HealthResponse(
        status=service.status,
        backend=model.info.get("backend") if model else None,
        model_version=model.info.get("version") if model else None,
        detail=scrub_paths(service.error) or None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if service.ready else 503)


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Readiness: 200 once a model is loaded and warmed up, 503 before (and while shutting down)",
    responses=_NOT_READY,
)
@router.get(
    "/readyz",
    response_model=HealthResponse,
    summary="Kubernetes readiness probe: the same answer as /health",
    responses=_NOT_READY,
    operation_id="readyz_readyz_get",  # as when it had a function of its own
)
async def health(service: ServiceDep) -> JSONResponse:
    return _readiness(service)


@router.get(
    "/livez",
    response_model=LivenessResponse,
    summary="Kubernetes liveness probe: 200 while the process answers HTTP, whatever the model's state",
)
async def livez() -> LivenessResponse:
    return LivenessResponse()
