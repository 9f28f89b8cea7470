from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["service"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, latencies, inference time, batch sizes, queue depth",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}},
)
async def metrics(request: Request) -> Response:
    app_metrics = request.app.state.metrics
    for refresh in app_metrics.before_collect:  # gauges computed on demand (drift PSI)
        refresh()
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)
