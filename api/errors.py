"""THE one place where errors become HTTP responses: every body is `{"detail": "<what was wrong>"}`.

Library errors (`detector.errors`) and the service's own errors (below) map to status codes here, so routes just
raise. Client mistakes are 4xx with a message saying what to fix; an unexpected exception is a 500 with a generic
message and a logged traceback (its text may leak internals, so it never reaches the client).

Status choices (documented in the README's API section):
    400  malformed request: bad JSON, bad base64, missing/extra fields, both `file` and `image_base64`, empty body
    401  missing or wrong admin API key          404  admin endpoints disabled (no key configured) or unknown path
    409  a model reload is already running       413  body, image bytes or image pixels over the configured limit
    415  unsupported media type (body or image format: GIF, TIFF...)
    408  the body did not arrive within `read_timeout_s` (the connection is closed)
    422  well-formed but unusable: undecodable/truncated image, out-of-range parameter, a reload's model file that
         fails to load (/admin/reload maps that itself: there the file is the client's choice)
    499  the client closed the connection before the answer (counted in /metrics; nobody receives it)
    500  a server-side failure: an inference that failed (wrong output shape, a closed backend), a config error
    503  model not loaded yet or unusable (ModelLoadError/BackendUnavailableError at inference), overloaded (with
         Retry-After: queue, uploads or pixel budget full) or shutting down
    504  the request waited longer than `request_timeout_s` for inference

Library errors raised *at inference time* are the server's fault, never the client's: api/inference/batching.py turns
them into `InferenceFailedError` (500) or `ModelUnavailableError` (503) before they reach the handlers here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

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

    def __init_subclass__(cls, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})

    @classmethod
    def with_status(cls, status: int, detail: str) -> ApiError:
        error = cls(detail)
        error.status = status
        return error


class BadRequestError(ApiError, status=400): ...


class UnauthorizedError(ApiError, status=401): ...


class NotFoundError(ApiError, status=404): ...


class ConflictError(ApiError, status=409): ...


class PayloadTooLargeError(ApiError, status=413): ...


class UnsupportedMediaTypeError(ApiError, status=415): ...


class UnprocessableError(ApiError, status=422): ...


class ServiceUnavailableError(ApiError, status=503):
    """Not ready, overloaded or shutting down: the client should retry later (hence Retry-After)."""

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, {"Retry-After": str(retry_after_s)})


class GatewayTimeoutError(ApiError, status=504): ...


class InferenceFailedError(ApiError, status=500):
    """The model failed on input the service had accepted: the server's fault, so 5xx (and alerting) not 4xx."""


class ModelUnavailableError(ServiceUnavailableError):
    """The model or its backend became unusable (a GPU fault, a backend that failed): retry, maybe elsewhere."""


CLIENT_CLOSED = 499  # nginx's "client closed request": the status /metrics counts a client disconnect under


# Most specific first: the first isinstance match wins.
_LIBRARY_STATUS: tuple[tuple[type[DetectorError], int], ...] = (
    (UnsupportedImageFormatError, 415),
    (ImageTooLargeError, 413),
    (InvalidImageError, 422),
    (InvalidInputError, 422),
    # Server-side faults: a model or backend that cannot run is 503 (retry, maybe elsewhere), configuration and
    # installation problems are 500. Never 4xx: the client did nothing wrong.
    (ModelLoadError, 503),
    (BackendUnavailableError, 503),
    (MissingDependencyError, 500),
    (ConfigError, 500),
)


def status_for(exc: DetectorError) -> int:
    """HTTP status of a library error; an unlisted DetectorError is a server-side failure (500)."""
    for cls, status in _LIBRARY_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


MAX_DETAIL_CHARS = 2048  # no error body echoes a client's megabytes back (or fills a log line)
# An absolute path of two or more parts (not inside a URL or a media type like image/jpeg): a server path.
_SERVER_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")


def scrub_paths(text: str) -> str:
    """`text` with every absolute server path cut to its last part (`/srv/models/a.onnx` -> `a.onnx`): error
    bodies tell a client what was wrong, not how the server's disk is laid out (the log keeps the full text)."""
    return _SERVER_PATH.sub(lambda m: m.group(1) or "<path>", text)


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    detail = scrub_paths(detail)
    if len(detail) > MAX_DETAIL_CHARS:
        detail = f"{detail[: MAX_DETAIL_CHARS - 40]}... ({len(detail)} characters in all)"
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def format_validation_errors(errors: Any) -> str:
    """FastAPI's error list -> one readable line, e.g. `query parameter conf: Input should be <= 1 (got 2)`."""
    errors = list(errors)
    parts = []
    for err in errors[:MAX_REPORTED_ERRORS]:  # 10,000 unexpected keys must not come back as 10,000 lines
        loc = [_cut(str(p)) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if loc and loc[0] in ("query", "header", "path") else ""
        if not where:
            where = ".".join(loc[1:] if loc and loc[0] == "body" else loc) or "request"
        shown = "input" in err and not isinstance(err["input"], dict | list)
        got = f" (got {_cut(repr(err['input']))})" if shown else ""
        parts.append(f"{where}: {err.get('msg', 'invalid')}{got}")
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more problems ({len(errors)} in all)")
    return "; ".join(parts) or "invalid request"


MAX_REPORTED_ERRORS = 5


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width] + "..."


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.headers)


async def _detector_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DetectorError)
    status = status_for(exc)
    if status >= 500:
        log.error("server-side library error on %s %s", request.method, request.url.path, exc_info=exc)
        if status == 503:
            return error_response(503, f"the model cannot serve right now: {exc}", {"Retry-After": "5"})
        return error_response(500, f"internal server error ({type(exc).__name__})")
    return error_response(status, str(exc))


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    # Nobody will read this answer (the server drops it); it exists so /metrics counts the request as 499, not 500,
    # and nothing is logged as an ERROR: a phone losing its signal mid-upload is not a server fault.
    log.debug("client closed the connection during %s %s", request.method, request.url.path)
    return error_response(CLIENT_CLOSED, "client closed the connection")


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
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
