"""Error mapping and base64 handling, without a model."""

from __future__ import annotations

import base64

import pytest

from api.admission.bodies import decode_base64
from api.errors import BadRequestError, format_validation_errors, status_for
from detector import errors as e


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (e.UnsupportedImageFormatError("gif"), 415),
        (e.ImageTooLargeError("big"), 413),
        (e.InvalidImageError("bad"), 422),
        (e.InvalidInputError("conf"), 422),
        # Server-side faults are never 4xx (a GPU failure must not look like a client mistake).
        (e.MissingMetadataError("no names"), 503),
        (e.ModelLoadError("missing"), 503),
        (e.BackendUnavailableError("no gpu"), 503),
        (e.MissingDependencyError("no tensorrt"), 500),
        (e.ConfigError("bad key"), 500),
        (e.DatasetError("server-side"), 500),
        (e.DetectorError("unknown"), 500),
    ],
)
def test_status_for_library_errors(exc: e.DetectorError, status: int) -> None:
    assert status_for(exc) == status


def test_validation_errors_read_as_one_line() -> None:
    errors = [
        {"loc": ("query", "conf"), "msg": "Input should be less than or equal to 1", "input": "2"},
        {"loc": ("body", "model_path"), "msg": "Field required", "input": {}},
    ]
    assert format_validation_errors(errors) == (
        "query parameter conf: Input should be less than or equal to 1 (got '2'); model_path: Field required"
    )


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(b"\x89PNG data").decode(),
        "data:image/png;base64," + base64.b64encode(b"\x89PNG data").decode(),
        "DATA:image/jpeg;charset=x;base64," + base64.b64encode(b"\x89PNG data").decode(),
        "  " + base64.encodebytes(b"\x89PNG data").decode() + "\n",  # MIME-style line breaks
    ],
)
def test_decode_base64_accepts(text: str) -> None:
    assert decode_base64(text) == b"\x89PNG data"


@pytest.mark.parametrize(
    ("text", "message"),
    [("abc", "not valid base64"), ("a$b=", "not valid base64"), ("data:image/png,abcd", "data URL")],
)
def test_decode_base64_rejects(text: str, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        decode_base64(text)


def test_many_unexpected_names_are_counted_not_echoed() -> None:
    from api.admission.bodies import few_names

    text = few_names([f"key{i}" for i in range(10_000)] + ["x" * 1_000_000])
    assert text.startswith("key0, key1, key2, key3, key4 and 9996 more (10001 in all)")
    assert len(text) < 100
    assert few_names(["y" * 1000]) == "y" * 40 + "..."
    errors = [{"loc": ("body", f"k{i}"), "msg": "Extra inputs are not permitted", "input": 1} for i in range(500)]
    line = format_validation_errors(errors)
    assert line.count("Extra inputs") == 5 and "and 495 more problems (500 in all)" in line
