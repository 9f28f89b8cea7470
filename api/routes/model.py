from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReadyServiceDep, ServiceDep
from api.inference.batching import batch_limit
from api.schemas import ModelInfo, ShadowReport, error_responses

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


@router.get(
    "/model/shadow",
    response_model=ShadowReport,
    summary="Champion/challenger: how the shadow model agrees with the served one on live traffic",
    description=(
        "Set `inference.shadow.model` to a file or `models:/<name>@challenger` to score a second model on a share "
        "of `/predict` and `/predict/batch` images, off the request path. `status` is off, loading, running or "
        "failed (then `detail` says why; serving is never affected). Counts are since start-up."
    ),
    responses=error_responses(503),
)
async def model_shadow(service: ServiceDep) -> ShadowReport:
    return ShadowReport.model_validate(service.shadow.snapshot())
