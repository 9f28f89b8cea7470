"""Every client mistake gets a 4xx with a message that says what was wrong; never a 500."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.admission.limits import ENVELOPE_BYTES

MAX_UPLOAD_MB = 0.25  # a small limit so "oversize" bodies are cheap to build
MAX_BYTES = int(MAX_UPLOAD_MB * 1024 * 1024)
MAX_DET_LIMIT = 100


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims width x height, with one tiny IDAT: a decompression-bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def encoded(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 200, 90)).save(buf, format=fmt)
    return buf.getvalue()


JPEG = encoded("JPEG", (64, 64))
B64 = base64.b64encode(JPEG).decode()


@dataclass
class Bad:
    id: str
    status: int
    message: str  # a substring of `detail`
    query: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


def multipart(name: str, data: bytes, ctype: str = "image/jpeg") -> dict[str, Any]:
    return {"files": {name: ("x.bin", data, ctype)}}


def raw(body: bytes | Iterator[bytes], ctype: str | None) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": ctype} if ctype else {}}


def text_form(fields: dict[str, str]) -> dict[str, Any]:
    """A multipart body of text fields only (httpx would send those urlencoded)."""
    parts = [f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return raw(("".join(parts) + "--b--\r\n").encode(), "multipart/form-data; boundary=b")


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A generator body: httpx sends it chunked, without Content-Length (a file part that never ends)."""
    yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    while total > 0:
        yield b"\xff" * min(size, total)
        total -= size


CASES = [
    Bad("empty-body-no-content-type", 400, "missing Content-Type", kwargs=raw(b"", None)),
    Bad("empty-json-body", 400, "empty request body", kwargs=raw(b"", "application/json")),
    Bad("empty-multipart-form", 400, "the form is empty", kwargs=raw(b"--b--\r\n", "multipart/form-data; boundary=b")),
    Bad("wrong-field-name", 400, "no field named 'file' (found fields: image)", kwargs=multipart("image", JPEG)),
    Bad("text-sent-as-jpeg", 422, "cannot identify image", kwargs=multipart("file", b"hello, I am not a JPEG")),
    Bad("truncated-jpeg", 422, "corrupt or truncated", kwargs=multipart("file", encoded("JPEG", (300, 200))[:700])),
    Bad("png-claims-30000x30000", 413, "30000x30000", kwargs=multipart("file", png_header(30000, 30000), "image/png")),
    Bad(
        "oversize-with-content-length",
        413,
        "larger than the limit",
        kwargs=multipart("file", b"\0" * (MAX_BYTES + ENVELOPE_BYTES + 1)),
    ),
    Bad(
        "oversize-chunked",
        413,
        "larger than the limit",
        kwargs=raw(chunks(MAX_BYTES * 2), "multipart/form-data; boundary=x"),
    ),
    Bad(
        "oversize-image-in-json",
        413,
        "limit is",
        kwargs={"json": {"image_base64": base64.b64encode(b"\xff" * (MAX_BYTES + 10)).decode()}},
    ),
    Bad("bad-base64", 400, "not valid base64", kwargs={"json": {"image_base64": "this is *not* base64!"}}),
    Bad(
        "base64-of-text",
        422,
        "cannot identify image",
        kwargs={"json": {"image_base64": base64.b64encode(b"plain text").decode()}},
    ),
    Bad("malformed-json", 400, "malformed JSON", kwargs=raw(b'{"image_base64": ', "application/json")),
    Bad("json-not-an-object", 400, "must be an object", kwargs={"json": [B64]}),
    Bad("json-wrong-field", 400, "unexpected JSON field(s): image", kwargs={"json": {"image": B64}}),
    Bad("json-thresholds-in-body", 400, "query parameters", kwargs={"json": {"image_base64": B64, "conf": 0.5}}),
    Bad("json-value-not-string", 400, "must be a string", kwargs={"json": {"image_base64": 12345}}),
    Bad("json-empty-string", 400, "empty (0 bytes)", kwargs={"json": {"image_base64": ""}}),
    Bad("bad-data-url", 400, "data URL", kwargs={"json": {"image_base64": "data:image/png," + B64}}),
    Bad("conf-above-1", 422, "conf", query="conf=1.5", kwargs=multipart("file", JPEG)),
    Bad("conf-not-a-number", 422, "conf", query="conf=high", kwargs=multipart("file", JPEG)),
    Bad("iou-negative", 422, "iou", query="iou=-0.1", kwargs=multipart("file", JPEG)),
    Bad("max-det-zero", 422, "max_det", query="max_det=0", kwargs=multipart("file", JPEG)),
    Bad(
        "max-det-over-limit",
        422,
        f"at most {MAX_DET_LIMIT}",
        query=f"max_det={MAX_DET_LIMIT + 1}",
        kwargs=multipart("file", JPEG),
    ),
    Bad("gif-unsupported", 415, "GIF", kwargs=multipart("file", encoded("GIF"), "image/gif")),
    Bad("tiff-unsupported", 415, "TIFF", kwargs=multipart("file", encoded("TIFF"), "image/tiff")),
    Bad(
        "both-file-and-base64",
        400,
        "not both",
        kwargs={"files": {"file": ("a.jpg", JPEG)}, "data": {"image_base64": B64}},
    ),
    Bad("zero-byte-file", 400, "empty (0 bytes)", kwargs=multipart("file", b"")),
    Bad("file-as-text-field", 400, "must be a file upload", kwargs=text_form({"file": "not a file"})),
    Bad("text-field-only", 400, "no field named 'file' (found fields: note)", kwargs=text_form({"note": "hi"})),
    Bad("urlencoded-form", 415, "application/x-www-form-urlencoded", kwargs={"data": {"file": "x"}}),
    Bad("two-files", 400, "Too many files", kwargs={"files": [("file", ("a.jpg", JPEG)), ("file", ("b.jpg", JPEG))]}),
    Bad("multipart-without-boundary", 400, "boundary", kwargs=raw(b"--x\r\n", "multipart/form-data")),
    Bad("wrong-content-type-text", 415, "unsupported Content-Type 'text/plain'", kwargs=raw(b"hello", "text/plain")),
    Bad("raw-body-empty", 400, "empty (0 bytes)", kwargs=raw(b"", "image/jpeg")),
    Bad("raw-body-oversize", 413, "larger than the limit", kwargs=raw(b"\xff" * (MAX_BYTES + 1), "image/jpeg")),
    Bad(
        "raw-body-oversize-chunked",
        413,
        "larger than the limit",
        kwargs=raw(chunks(MAX_BYTES * 2), "application/octet-stream"),
    ),
    Bad("raw-body-not-an-image", 422, "cannot identify image", kwargs=raw(b"plain text" * 10, "image/png")),
    Bad("raw-body-gif", 415, "GIF", kwargs=raw(encoded("GIF"), "image/gif")),
    Bad("raw-body-video-type", 415, "unsupported Content-Type 'video/mp4'", kwargs=raw(JPEG, "video/mp4")),
]


@pytest.fixture(scope="module")
def small_client(make_config: Any, run_app: Any) -> Iterator[TestClient]:
    config = make_config(
        f"inference.server.max_upload_mb={MAX_UPLOAD_MB}", f"inference.server.max_det_limit={MAX_DET_LIMIT}"
    )
    with run_app(config) as c:
        yield c


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(small_client: TestClient, case: Bad) -> None:
    url = "/predict" + (f"?{case.query}" if case.query else "")
    r = small_client.post(url, **case.kwargs)
    assert r.status_code < 500, r.text
    assert r.status_code == case.status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert case.message in detail


MP4_START = b"\0\0\0\x18ftypmp42"  # the first bytes of an MP4


def _mp4_chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield MP4_START
    while total > 0:
        yield b"\0" * min(size, total)
        total -= size


@pytest.mark.parametrize(
    ("body", "ctype", "status", "message"),
    [
        (b"", "video/mp4", 400, "the clip is empty (0 bytes)"),
        (MP4_START + b"\0" * MAX_BYTES, "video/mp4", 413, "an image or clip may have"),  # by Content-Length
        ("chunked", "application/octet-stream", 413, "larger than the limit"),  # counted as it arrives
        (JPEG, "video/mp4", 415, "JPEG image, not a video: send images to /predict"),
        (b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "video/mp4", 415, "not a video"),
        (MP4_START, "text/plain", 415, "unsupported Content-Type 'text/plain'"),
        (b"--x\r\n", "multipart/form-data", 400, "has no boundary parameter"),
    ],
    ids=["empty", "oversize", "oversize-chunked", "a-jpeg", "a-playlist", "text-plain", "form-without-boundary"],
)
def test_bad_clip_bodies(small_client: TestClient, body: Any, ctype: str, status: int, message: str) -> None:
    # The clip as the body of /predict/video: the same limits and answers as a form's file.
    content = _mp4_chunks(MAX_BYTES * 2) if body == "chunked" else body
    r = small_client.post("/predict/video", content=content, headers={"content-type": ctype})
    assert r.status_code == status and message in r.json()["detail"], r.text


@pytest.mark.parametrize(
    ("ctype", "status", "message"),
    [
        ("multipart/form-data", 400, "has no boundary parameter"),
        ("image/jpeg", 415, "send one 'files' part per image"),
        ("", 415, "got no Content-Type"),
    ],
    ids=["without-boundary", "an-image-body", "no-content-type"],
)
def test_batch_wants_a_form(small_client: TestClient, ctype: str, status: int, message: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = small_client.post("/predict/batch", content=JPEG, headers=headers)
    assert r.status_code == status and message in r.json()["detail"], r.text


def test_the_service_still_works_after_the_table(small_client: TestClient) -> None:
    r = small_client.post("/predict", files={"file": ("a.jpg", JPEG, "image/jpeg")})
    assert r.status_code == 200, r.text
    metrics = small_client.get("/metrics").text
    assert 'status="500"' not in metrics


def test_unknown_paths_and_methods(small_client: TestClient, tmp_path: Path) -> None:
    assert small_client.get("/nope").json() == {"detail": "Not Found"}
    r = small_client.get("/predict")
    assert r.status_code == 405
    assert r.json()["detail"] == "Method Not Allowed"
