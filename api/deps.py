"""FastAPI dependencies: the app's Service, readiness, the admin key check, and the inference routes' options (their
query parameters, the same names, ranges and docs everywhere, checked into the pipeline's `Options` before the body
is read)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader

from api.errors import NotFoundError, ServiceUnavailableError, UnauthorizedError
from api.inference.pipeline import Options, Pipeline
from api.service import Service

# auto_error=False: we answer 401 with our own message (and 404 when admin is disabled) instead of FastAPI's 403.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="inference.server.admin_api_key")


# `async def`, not `def`: FastAPI runs plain `def` dependencies in its thread pool, one round trip per dependency
# per request (profiled: ~8 thread hops per /predict, about 1 ms at concurrency 1). These only read attributes.
#
# Flat, not chained: FastAPI solves a dependency's own dependencies again wherever it is used, before its cache is
# looked at, so `ready_pipeline` -> `ready_service` -> `get_service`, used by `/predict` and by its options, was
# solved as 9 dependency nodes a request; each reads the app's state itself now (3 nodes: the route, the pipeline,
# the options). cProfile of the event loop at concurrency 1: FastAPI's dependency solving was 29 % of its time
# per request before.


def _service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:  # only between app creation and lifespan start
        raise ServiceUnavailableError("the service is starting")
    return service


def _ready(service: Service) -> Service:
    """The service, if its model is loaded and warmed up; 503 + Retry-After otherwise."""
    if not service.ready:
        if service.status == "failed":
            raise ServiceUnavailableError(f"no model is loaded: {service.error}", 30)
        raise ServiceUnavailableError(f"the model is not ready ({service.status}); retry shortly", 5)
    return service


async def get_service(request: Request) -> Service:
    return _service(request)


ServiceDep = Annotated[Service, Depends(get_service)]


async def ready_service(request: Request) -> Service:
    return _ready(_service(request))


ReadyServiceDep = Annotated[Service, Depends(ready_service)]


async def ready_pipeline(request: Request) -> Pipeline:
    """What the prediction routes run their images through (api/inference/pipeline.py), once the model is ready."""
    return _ready(_service(request)).pipeline


ReadyPipelineDep = Annotated[Pipeline, Depends(ready_pipeline)]


async def require_admin(
    request: Request, service: ServiceDep, api_key: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    granted = request.scope.get("state", {}).get("api_key")
    if granted is not None and "admin" in granted.scopes:  # an API key with the admin scope (api/admission/auth.py)
        return
    expected = service.config.inference.server.admin_api_key
    if not expected:
        raise NotFoundError(
            "admin endpoints are disabled: set inference.server.admin_api_key, or give an API key the admin scope "
            "(inference.server.auth), to enable them"
        )
    # compare_digest: no timing side channel on the key.
    if not api_key or not secrets.compare_digest(api_key.encode(), expected.encode()):
        raise UnauthorizedError("missing or wrong X-API-Key header", {"WWW-Authenticate": "ApiKey"})


# -- the inference routes' options -----------------------------------------------------------------------------

ConfQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=1,
        description="Confidence threshold for every class (default: the model's per-class thresholds where it has "
        "them, see GET /model, else the configured conf)",
    ),
]
IouQuery = Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold (default: config)")]
MaxDetQuery = Annotated[int | None, Query(ge=1, description="Most boxes returned (default: config)")]
ConfPerClassQuery = Annotated[
    str | None,
    Query(
        description="Confidence threshold per class, `CLASS:CONF` pairs, comma-separated (names or ids, e.g. "
        "`circle:0.4,square:0.6`); overrides the threshold of those classes only (the others keep the model's "
        "per-class thresholds, or `conf` when given). May instead be sent as `conf_per_class` in the JSON body "
        "(an object or the same string) or as a multipart text field. Unknown class: 422",
        examples=["circle:0.4,square:0.6"],
        max_length=20_000,
    ),
]
ClassesQuery = Annotated[
    str | None,
    Query(
        description="Only these classes: names or ids, comma-separated (e.g. `circle,square` or `0,1`); "
        "may instead be sent as `classes` in the JSON body or as a multipart text field. Unknown: 422 listing the "
        "model's classes",
        examples=["circle,square"],
    ),
]

TileQuery = Annotated[
    str | None,
    Query(
        description="Detect in overlapping tiles of this size, `WIDTHxHEIGHT` in pixels (e.g. `640x640`), merged "
        "across tiles (inference.tiling): for small objects in big images. A tile larger than the image: 422",
        examples=["640x640"],
        max_length=16,
    ),
]
OverlapQuery = Annotated[
    float, Query(ge=0, lt=1, description="With `tile`: the share of a tile its neighbour overlaps, each way")
]


async def prediction_options(
    request: Request,
    conf: ConfQuery = None,
    iou: IouQuery = None,
    max_det: MaxDetQuery = None,
    classes: ClassesQuery = None,
    conf_per_class: ConfPerClassQuery = None,
    tile: TileQuery = None,
    overlap: OverlapQuery = 0.2,
) -> Options:
    """422 for a bad value, before any body is read."""
    # A call, not a `ReadyPipelineDep` parameter: FastAPI would solve that node again (see above); the readiness
    # check is two attribute reads.
    pipeline = await ready_pipeline(request)
    return pipeline.options(conf, iou, max_det, conf_per_class, classes, tile, overlap)


OptionsDep = Annotated[Options, Depends(prediction_options)]
