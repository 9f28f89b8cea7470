from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReadyServiceDep
from api.schemas import ModelInfo, error_responses

router = APIRouter(tags=["model"])


@router.get("/model", response_model=ModelInfo, summary="The served model's metadata", responses=error_responses(503))
async def model_info(service: ReadyServiceDep) -> ModelInfo:
    model = service.slot.current
    assert model is not None  # ready implies loaded
    info = model.info
    backend_max = info.get("max_batch")
    server_max = service.config.inference.server.max_batch
    return ModelInfo.model_validate(
        {
            **info,
            "max_batch": min(server_max, backend_max) if backend_max else server_max,
            "backend_max_batch": backend_max,
            "version": str(info.get("version", "")),
            "dataset_version": str(info.get("dataset_version") or ""),
            "source_run_id": str(info.get("source_run_id") or ""),
        }
    )
