"""Every JPEG decode is bounded (issue 21): a scan limit for progressive JPEGs, strict CMYK/YCCK decoding, and
short error messages for huge class filters."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from detector.errors import InvalidImageError, InvalidInputError
from detector.runtime.classes import parse_classes
from detector.runtime.images import decode_image_scaled, probe_image

MAX_JPEG_SCANS = 100  # detector.runtime.images.MAX_JPEG_SCANS


def jpeg(mode: str, side: int, progressive: bool = False, flat: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((side, side))
    if flat:
        small = Image.new("RGB", (side, side), (90, 120, 30))
    buf = io.BytesIO()
    small.convert(mode).save(buf, "JPEG", quality=80, progressive=progressive)
    return buf.getvalue()


def many_scans(data: bytes, scans: int) -> bytes:
    """`data` (a progressive JPEG) with its last scan repeated until the file declares `scans` scans."""
    sos = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    last = data[sos[-1] : data.rindex(b"\xff\xd9")]
    return data[: sos[-1]] + last * (scans - len(sos) + 1) + b"\xff\xd9"


def cut_scan_data(data: bytes) -> bytes:
    """The header and the first SOS header only: no scan data (a 'JPEG bomb')."""
    sos = data.index(b"\xff\xda")
    length = int.from_bytes(data[sos + 2 : sos + 4], "big")
    return data[: sos + 2 + length] + b"\xff\xd9"


def test_ordinary_progressive_jpegs_decode() -> None:
    data = jpeg("RGB", 640, progressive=True)
    assert 1 < data.count(b"\xff\xda") <= MAX_JPEG_SCANS
    assert decode_image_scaled(data).pixels.shape == (640, 640, 3)


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding() -> None:
    data = many_scans(jpeg("RGB", 4800, progressive=True, flat=True), 2646)
    assert len(data) < 3_000_000
    started = time.perf_counter()
    for check in (probe_image, decode_image_scaled):
        with pytest.raises(InvalidImageError, match=r"2646 scans; at most 100"):
            check(data)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("mode", ["CMYK", "RGB", "L"])
def test_missing_scan_data_is_an_error_for_every_colour_space(mode: str) -> None:
    # Before: the CMYK one decoded to a grey 6000x6000 image through PIL's lenient decoder.
    bomb = cut_scan_data(jpeg(mode, 6000))
    assert len(bomb) < 2000
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        decode_image_scaled(bomb)


def test_a_whole_cmyk_jpeg_still_decodes_to_rgb() -> None:
    data = jpeg("CMYK", 320)
    pixels = decode_image_scaled(data).pixels
    assert pixels.shape == (320, 320, 3)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(pixels, expected)


def test_unknown_classes_are_reported_briefly() -> None:
    names = {0: "circle", 1: "square"}
    with pytest.raises(InvalidInputError) as info:
        parse_classes([f"class-{i}" for i in range(200_000)], names)
    message = str(info.value)
    assert len(message) < 1000, len(message)
    assert "'class-0'" in message and "200000 in all" in message and "0=circle" in message
    with pytest.raises(InvalidInputError) as info:
        parse_classes(list(range(10, 1_000_010)), names)
    assert len(str(info.value)) < 1000
