"""Image decoding: formats, modes, EXIF orientation, limits, corruption."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from detector.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError
from detector.runtime.images import decode_image, read_image


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims width x height (a decompression-bomb probe)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + _chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), "JPEG")
    return data[: len(data) * 2 // 3]


RGB = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (32, 1, 3)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_accepted_formats(fmt: str) -> None:
    out = decode_image(_encode(RGB, fmt))
    assert out.shape == (32, 64, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 200, (200, 200, 200)),  # grayscale -> 3 channels
        ("I;16", 65535, (255, 255, 255)),  # 16-bit is rescaled, not clipped
        ("I;16", 32896, (128, 128, 128)),
    ],
)
def test_modes(mode: str, value: int, expected: tuple[int, int, int]) -> None:
    img = Image.new(mode, (8, 4), value)
    out = decode_image(_encode(img, "PNG"))
    assert out.shape == (4, 8, 3) and tuple(out[0, 0]) == expected


def test_rgba_is_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert tuple(decode_image(_encode(img, "PNG"))[0, 0]) == (255, 255, 255)


def test_palette_image() -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert tuple(decode_image(_encode(img, "PNG"))[0, 0]) == (10, 20, 30)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.shape == (40, 20, 3)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"", InvalidImageError, "empty"),
        (b"hello, this is text", InvalidImageError, "cannot identify image"),
        (_encode(RGB, "GIF"), UnsupportedImageFormatError, "format GIF is not accepted"),
        (_encode(RGB, "TIFF"), UnsupportedImageFormatError, "format TIFF is not accepted"),
        (truncated_jpeg(), InvalidImageError, "corrupt or truncated"),
        (png_claiming(30000, 30000), ImageTooLargeError, "30000x30000"),
    ],
)
def test_bad_images(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        decode_image(data)


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(ImageTooLargeError, match="limit is 100 pixels"):
        decode_image(_encode(RGB, "PNG"), max_pixels=100)


def test_read_image_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"nope")
    with pytest.raises(InvalidImageError, match=r"broken\.jpg"):
        read_image(path)
    with pytest.raises(InvalidImageError, match="cannot read"):
        read_image(tmp_path / "missing.jpg")
