from __future__ import annotations

from fastapi import APIRouter

from api.batching import batch_limit
from api.deps import ReadyServiceDep
from api.schemas import ModelInfo, error_responses

router = APIRouter(tags=["model"])


@router.get("/model", response_model=ModelInfo, summary="The served model's metadata", responses=error_responses(503))
async def model_info(service: ReadyServiceDep) -> ModelInfo:
    model = service.slot.current
    assert model is not None  # ready implies loaded
    info = model.info
    server = service.config.inference.server
    return ModelInfo.model_validate(
        {
            **info,
            "max_batch": batch_limit(server.max_batch, server.micro_batching, info),
            "backend_max_batch": info.get("max_batch"),
            "version": str(info.get("version", "")),
            "dataset_version": str(info.get("dataset_version") or ""),
            "source_run_id": str(info.get("source_run_id") or ""),
        }
    )
