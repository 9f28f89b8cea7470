"""Image decoding: formats, modes, EXIF orientation, limits, corruption."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from detector.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError
from detector.runtime.images import decode_image, decode_image_scaled, probe_image, read_image


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


# -- strict and reduced decoding (issue 13) ---------------------------------------------------------------------------


def _jpeg(width: int, height: int, **save: object) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height)).save(buf, "JPEG", **save)
    return buf.getvalue()


def test_jpeg_with_missing_scan_data_is_refused() -> None:
    full = _jpeg(640, 480)
    sos = full.index(b"\xff\xda")
    header = full[: sos + 2 + int.from_bytes(full[sos + 2 : sos + 4], "big")]
    for broken in (header + b"\xff\xd9", full[: len(full) // 2] + b"\xff\xd9"):
        with pytest.raises(InvalidImageError, match="corrupt or truncated"):
            decode_image(broken)


def test_jpeg_decode_is_bit_identical_to_pil() -> None:
    data = _jpeg(333, 211, quality=90)
    assert np.array_equal(decode_image(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_reduced_jpeg_decode_covers_the_model_input_and_keeps_the_sent_size() -> None:
    data = _jpeg(4000, 3000)
    probe = probe_image(data, reduce_to=(640, 640))
    image = decode_image_scaled(data, reduce_to=(640, 640))
    h, w = image.pixels.shape[:2]
    assert (w, h) == (1000, 750)  # 1/4: the smallest DCT scale still at least 640 x 480 (the letterboxed size)
    assert probe.decoded_pixels == w * h and (probe.width, probe.height) == (4000, 3000)
    assert (image.width, image.height) == (4000, 3000) and image.scale == (4.0, 4.0)
    small = _jpeg(900, 700)  # less than twice the input: decoded exactly
    assert decode_image_scaled(small, reduce_to=(640, 640)).pixels.shape == (700, 900, 3)


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((1280, 720), (640, 360)),  # exactly twice the letterbox: half is every pixel it needs
        ((1920, 1080), (960, 540)),  # 1/3 would do: 1/2, not libjpeg-turbo's own pick of 3/8 (no SIMD for it)
        ((6000, 4000), (750, 500)),  # 1/8 at most
        ((1279, 720), (1279, 720)),  # a pixel short of twice: whole
    ],
)
def test_reduced_jpeg_decodes_only_at_power_of_two_scales(size: tuple[int, int], decoded: tuple[int, int]) -> None:
    data = _jpeg(*size)
    image = decode_image_scaled(data, reduce_to=(640, 640))
    assert image.pixels.shape[1::-1] == decoded
    assert probe_image(data, reduce_to=(640, 640)).decoded_pixels == decoded[0] * decoded[1]


def test_reduced_decode_applies_exif_orientation() -> None:
    img = Image.fromarray(np.zeros((1200, 3000, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    image = decode_image_scaled(buf.getvalue(), reduce_to=(128, 128))
    assert (image.width, image.height) == (1200, 3000)
    assert image.pixels.shape[0] > image.pixels.shape[1]  # upright: taller than wide


def test_mpo_reads_its_first_frame() -> None:
    first = Image.fromarray(np.full((60, 80, 3), 200, np.uint8))
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[Image.new("RGB", (80, 60))])
    decoded = decode_image(buf.getvalue())
    assert decoded.shape == (60, 80, 3) and abs(int(decoded.mean()) - 200) <= 2


def test_16bit_grayscale_rescales_exactly_in_integers() -> None:
    values = (np.arange(300 * 200).reshape(300, 200) * 7 % 65536).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    decoded = decode_image(buf.getvalue())
    assert np.array_equal(decoded[:, :, 0], (values // 257).astype(np.uint8))
    assert np.array_equal(decoded[:, :, 0], decoded[:, :, 2])
