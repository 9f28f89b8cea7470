"""THE one place where errors become HTTP responses: every body is `{"detail": "<what was wrong>"}`.

Library errors (`detector.errors`) and the service's own errors (below) map to status codes here, so routes just
raise. Client mistakes are 4xx with a message saying what to fix; an unexpected exception is a 500 with a generic
message and a logged traceback (its text may leak internals, so it never reaches the client).

Status choices (documented in the README's API section):
    400  malformed request: bad JSON, bad base64, missing/extra fields, both `file` and `image_base64`, empty body
    401  missing or wrong admin API key          404  admin endpoints disabled (no key configured) or unknown path
    409  a model reload is already running       413  body, image bytes or image pixels over the configured limit
    415  unsupported media type (body or image format: GIF, TIFF...)
    422  well-formed but unusable: undecodable/truncated image, out-of-range parameter, model that fails to load
    503  model not loaded yet, overloaded (with Retry-After) or shutting down
    504  the request waited longer than `request_timeout_s` for inference
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from detector.errors import (
    BackendUnavailableError,
    ConfigError,
    DetectorError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidInputError,
    MissingDependencyError,
    ModelLoadError,
    UnsupportedImageFormatError,
)

log = logging.getLogger("api")


class ApiError(Exception):
    """An error the service raises on purpose; `status` and optional `headers` say how to answer."""

    status: int = 400

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequestError(ApiError):
    status = 400


class UnauthorizedError(ApiError):
    status = 401


class NotFoundError(ApiError):
    status = 404


class ConflictError(ApiError):
    status = 409


class PayloadTooLargeError(ApiError):
    status = 413


class UnsupportedMediaTypeError(ApiError):
    status = 415


class UnprocessableError(ApiError):
    status = 422


class ServiceUnavailableError(ApiError):
    """Not ready, overloaded or shutting down: the client should retry later (hence Retry-After)."""

    status = 503

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


class GatewayTimeoutError(ApiError):
    status = 504


# Most specific first: the first isinstance match wins.
_LIBRARY_STATUS: tuple[tuple[type[DetectorError], int], ...] = (
    (UnsupportedImageFormatError, 415),
    (ImageTooLargeError, 413),
    (InvalidImageError, 422),
    (InvalidInputError, 422),
    (ModelLoadError, 422),
    (MissingDependencyError, 422),
    (BackendUnavailableError, 422),
    (ConfigError, 422),
)


def status_for(exc: DetectorError) -> int:
    """HTTP status of a library error; an unlisted DetectorError is a server-side failure (500)."""
    for cls, status in _LIBRARY_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def format_validation_errors(errors: Any) -> str:
    """FastAPI's error list -> one readable line, e.g. `query parameter conf: Input should be <= 1 (got 2)`."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if loc and loc[0] in ("query", "header", "path") else ""
        if not where:
            where = ".".join(loc[1:] if loc and loc[0] == "body" else loc) or "request"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict | list) else ""
        parts.append(f"{where}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "invalid request"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.headers)


async def _detector_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DetectorError)
    status = status_for(exc)
    if status == 500:
        log.error("unmapped library error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error")
    return error_response(status, str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's JSON body validation reports unparseable JSON as a validation error; that is a malformed request.
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return error_response(400, "malformed JSON body: " + format_validation_errors(exc.errors()))
    return error_response(422, format_validation_errors(exc.errors()))


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error; the incident was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DetectorError, _detector_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
