"""FastAPI dependencies: the app's Service, readiness, the admin key check, and the inference routes' options (their
query parameters, `PredictionQuery`, checked into the pipeline's `Options` before the body is read)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import ValidationError

from api.errors import NotFoundError, ServiceUnavailableError, UnauthorizedError
from api.inference.pipeline import Options, Pipeline
from api.schemas import PredictionQuery
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


def prediction_query(request: Request) -> PredictionQuery:
    """The inference routes' query parameters (`PredictionQuery`: the same names, ranges and docs everywhere); 422
    for a bad value, as FastAPI answers for a declared one (`RequestValidationError`, the same errors).

    Validated here in one call of the model rather than declared as parameters for FastAPI to validate: it checks
    each declared parameter on its own and inspects its type again on every request; the seven cost 55-90 us a
    request where this costs under 10 (a bare app, in-process, Intel Xeon VM), and five to six times that in the
    service, where a request's code runs after inference has emptied the caches for it (docs/performance.md).
    Dependency solving went from 0.32 to 0.23 ms of a `/predict` there. The routes document the parameters with
    `query_parameters(PredictionQuery)` (api/docs.py)."""
    try:
        return PredictionQuery.model_validate(dict(request.query_params))  # a repeated name: the last, as FastAPI
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("query", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from None


async def prediction_options(request: Request) -> Options:
    """The query parameters as the pipeline's `Options`; 422 for a bad value, before any body is read."""
    query = prediction_query(request)
    # A call, not a `ReadyPipelineDep` parameter: FastAPI would solve that node again (see above); the readiness
    # check is two attribute reads.
    pipeline = await ready_pipeline(request)
    return pipeline.options(
        query.conf, query.iou, query.max_det, query.conf_per_class, query.classes, query.tile, query.overlap
    )


OptionsDep = Annotated[Options, Depends(prediction_options)]
