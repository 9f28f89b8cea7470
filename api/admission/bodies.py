"""Getting the image bytes out of a /predict request: multipart field `file`, JSON `{"image_base64": ...}`, or the
image itself as the body (`Content-Type: image/jpeg`, any `image/*`, or `application/octet-stream`).

Parsed by hand rather than by FastAPI parameters because the endpoint accepts three content types, must reserve a
queue slot *before* the body is read, and must say precisely what is wrong with a bad request.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from api.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

BodyKind = Literal["multipart", "json", "raw"]
HOW = (
    'send the image as multipart/form-data field \'file\', as JSON {"image_base64": "..."}, or as the body itself '
    "with Content-Type image/jpeg (any image/*) or application/octet-stream"
)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lowercase, without its parameters (`; boundary=...`)."""
    return content_type.split(";", 1)[0].strip().lower()


def body_kind(request: Request) -> BodyKind:
    """Classify by Content-Type (cheap: no body read); 400/415 when it cannot be an image request."""
    ctype = media_type(request.headers.get("content-type", ""))
    if ctype == "multipart/form-data":
        return "multipart"
    if ctype == "application/json" or ctype.endswith("+json"):
        return "json"
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return "raw"
    if not ctype:
        raise BadRequestError(f"missing Content-Type header: {HOW}")
    raise UnsupportedMediaTypeError(f"unsupported Content-Type {ctype!r}: {HOW}")


@dataclass(frozen=True)
class ImageInput:
    """The image bytes plus the options a body may carry besides them (the class filter)."""

    data: bytes
    classes: str | list[Any] | None = None  # JSON `classes` or multipart field `classes`; None when absent
    conf_per_class: str | dict[str, Any] | None = None  # JSON `conf_per_class` or the multipart field; None: absent


async def read_image_input(request: Request, kind: BodyKind, max_bytes: int) -> ImageInput:
    """The image bytes of a body of `kind`, at most `max_bytes` (413 over, 400 empty), with the class options a form
    or JSON body carries besides them."""
    options: dict[str, Any] = {}  # the class filters of a form or JSON body (a raw body has them in the query only)
    data = await _read(request, kind, max_bytes, options)
    _check_size(data, max_bytes)
    return ImageInput(data, options.get("classes"), options.get("conf_per_class"))


def _check_size(data: bytes, max_bytes: int) -> None:
    if not data:
        raise BadRequestError("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes")


async def _read(request: Request, kind: BodyKind, max_bytes: int, options: dict[str, Any]) -> bytes:
    if kind == "multipart":
        return await _from_multipart(request, max_bytes, options)
    if kind == "json":
        return await _from_json(request, options)
    # The image as the body (`curl --data-binary`): no form to build or parse. The service's read stage takes
    # 0.14 instead of 0.33 ms (Server-Timing, 2-core Intel VM, 640 px photos); HTTP c=1 as a whole moved within the
    # noise (benchmarks.peers). Its size is capped by api/admission/limits.py as it arrives.
    return await request.body()


async def _from_multipart(request: Request, max_bytes: int, options: dict[str, Any]) -> bytes:
    _require_boundary(request)
    # max_files=1: a second file is refused by the parser (400) before it is spooled.
    form = await request.form(max_files=1, max_fields=16)
    try:
        upload = form.get("file")
        others = sorted(k for k in form if k != "file")
        if "classes" in form:
            value = form.get("classes")
            if not isinstance(value, str):
                raise BadRequestError("field 'classes' must be a text field like circle,square")
            options["classes"] = value
        if "conf_per_class" in form:
            value = form.get("conf_per_class")
            if not isinstance(value, str):
                raise BadRequestError("field 'conf_per_class' must be a text field like circle:0.4,square:0.6")
            options["conf_per_class"] = value
        if "image_base64" in form and upload is not None:
            raise BadRequestError("send either a 'file' upload or 'image_base64', not both")
        if upload is None:
            found = f" (found fields: {', '.join(others)})" if others else " (the form is empty)"
            raise BadRequestError(f"multipart body has no field named 'file'{found}: {HOW}")
        if not isinstance(upload, UploadFile):
            raise BadRequestError("field 'file' must be a file upload (filename=...), not a text field")
        if upload.size is not None and upload.size > max_bytes:
            raise PayloadTooLargeError(f"the image is {upload.size} bytes; the limit is {max_bytes} bytes")
        return await upload.read()
    finally:
        await form.close()


JSON_INLINE_BYTES = 64 * 1024  # bodies up to this are parsed on the event loop (faster than a thread hop)
# Most commas / string quotes a JSON body may hold: an image (one string, base64 has neither) and a class filter.
# Counted before parsing, at memchr speed: json.loads holds the GIL, so parsing a 13 MB object of a million keys
# (~0.5 s) stalls every other request, in a thread or not.
MAX_JSON_ITEMS = 10_000


async def _from_json(request: Request, options: dict[str, Any]) -> bytes:
    # The body's size is capped by api/admission/limits.py (4/3 of max_upload_mb + an envelope) before it is read.
    raw = await request.body()
    items = max(raw.count(b","), raw.count(b'"') // 2)
    if items > MAX_JSON_ITEMS:
        raise BadRequestError(
            f"the JSON body holds about {items} items (fields, list entries); at most {MAX_JSON_ITEMS} are accepted: "
            'send {"image_base64": "..."} and optionally "classes"'
        )
    if len(raw) <= JSON_INLINE_BYTES:
        return _parse_json(raw, options)
    # Parsing and base64-decoding 13 MB take tens of ms of one core: off the event loop, so /health and every
    # other request keep being served meanwhile (three clients posting 13 MB objects stalled /health 0.7-2.4 s).
    return await run_in_threadpool(_parse_json, raw, options)


def _parse_json(raw: bytes, options: dict[str, Any]) -> bytes:
    if not raw.strip():
        raise BadRequestError(f"empty request body: {HOW}")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequestError(f"malformed JSON body: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequestError(
            f'JSON body must be an object like {{"image_base64": "..."}}, got {type(payload).__name__}'
        )
    allowed = {"image_base64", "classes", "conf_per_class"}
    extra = [k for k in payload if k not in allowed]
    if extra:
        hint = " (conf, iou and max_det are query parameters)" if {"conf", "iou", "max_det"} & set(extra) else ""
        expected = " and ".join(map(repr, sorted(allowed)))
        raise BadRequestError(f"unexpected JSON field(s): {few_names(extra)}{hint}; expected only {expected}")
    if "image_base64" not in payload:
        raise BadRequestError(f"JSON body has no 'image_base64' field: {HOW}")
    if "classes" in payload:
        classes = payload["classes"]
        if not isinstance(classes, str | list) or (
            isinstance(classes, list) and not all(isinstance(c, str | int) and not isinstance(c, bool) for c in classes)
        ):
            raise BadRequestError("'classes' must be a string like \"circle,square\" or a list of names or ids")
        options["classes"] = classes
    if "conf_per_class" in payload:
        per_class = payload["conf_per_class"]
        if not isinstance(per_class, str | dict):
            raise BadRequestError("'conf_per_class' must be an object like {\"circle\": 0.4} or a string circle:0.4")
        options["conf_per_class"] = per_class
    value = payload["image_base64"]
    if not isinstance(value, str):
        raise BadRequestError(f"'image_base64' must be a string, got {type(value).__name__}")
    return decode_base64(value)


def few_names(names: list[str], shown: int = 5, width: int = 40) -> str:
    """The first `shown` names, each cut to `width` characters: a body with 100,000 keys (or one 1 MB key) must
    not come back in the error message."""
    cut = [n if len(n) <= width else n[:width] + "..." for n in names[:shown]]
    more = f" and {len(names) - shown} more ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(cut) + more


def decode_base64(value: str) -> bytes:
    """Standard base64, optionally behind a data-URL prefix; whitespace (line breaks) is ignored."""
    text = value.strip()
    if text[:5].lower() == "data:":  # URL schemes are case-insensitive
        match = _DATA_URL.match(text)
        if match is None:
            raise BadRequestError("'image_base64' data URL must look like data:image/png;base64,<data>")
        text = text[match.end() :]
    text = "".join(text.split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"'image_base64' is not valid base64: {exc}") from None


CLIP_HOW = (
    "send the clip as multipart/form-data field 'file', or as the body itself with Content-Type video/mp4 (any "
    "video/*) or application/octet-stream"
)


def clip_is_body(request: Request) -> bool:
    """Whether a clip comes as the body itself (`video/*` or `application/octet-stream`: `curl --data-binary`)
    rather than as a multipart form's `file` (False); 400/415 for anything else, as `body_kind` does for images."""
    ctype = media_type(request.headers.get("content-type", ""))
    if ctype.startswith("video/") or ctype == "application/octet-stream":
        return True
    if not ctype:
        raise BadRequestError(f"missing Content-Type header: {CLIP_HOW}")
    if ctype != "multipart/form-data":
        raise UnsupportedMediaTypeError(f"unsupported Content-Type {ctype!r}: {CLIP_HOW}")
    _require_boundary(request)
    return False


def require_multipart(request: Request, expected: str) -> None:
    """415 unless the body is multipart/form-data (`expected` says which parts to send), 400 without a boundary."""
    ctype = request.headers.get("content-type", "")
    if media_type(ctype) != "multipart/form-data":
        raise UnsupportedMediaTypeError(f"send {expected} as multipart/form-data (got {ctype or 'no'} Content-Type)")
    _require_boundary(request)


def _require_boundary(request: Request) -> None:
    """400 for a multipart/form-data Content-Type without the boundary its parts are split on."""
    if "boundary=" not in request.headers.get("content-type", ""):
        raise BadRequestError("multipart/form-data Content-Type has no boundary parameter")
