"""Image bytes -> RGB uint8 array, safely: format whitelist, pixel limit checked from the header before decoding
(decompression bombs), EXIF orientation applied, grayscale/RGBA/palette/16-bit converted, truncation detected.

JPEG (and MPO, the multi-picture JPEG phones write; its first frame) decodes with simplejpeg (libjpeg-turbo, the
same library PIL wraps, bit-identical output) because it has the two things PIL lacks: a strict mode that fails on
missing or corrupt scan data (PIL fills it grey and answers 200), and DCT scaling chosen by the size the caller
needs (`reduce_to`): a 6000x6000 photo for a 640 px model decodes at 1/8 scale, 64x fewer pixels, in a fraction of
the time. Without `reduce_to` the decode is exact (full size), as Ultralytics decodes.

Bounded work per JPEG (issue 21): a progressive JPEG is decoded once per scan, so a 253 KB file with 2,646 scans
took 9-46 s where an ordinary one of its size takes 6 ms. More than `MAX_JPEG_SCANS` start-of-scan markers is
refused before decoding (libjpeg-turbo's own answer is the same: `TJPARAM_SCANLIMIT`). CMYK/YCCK JPEGs, which only
PIL converts to RGB, are first checked strictly by libjpeg-turbo at 1/8 scale, so missing scan data is a 422 as for
RGB, not a grey image.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageFile, UnidentifiedImageError

from detector.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError
from detector.runtime.detections import Detections
from detector.runtime.preprocess import halvings_for

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
_OPENED_AS = {"MPO": "JPEG"}  # PIL names a multi-picture JPEG "MPO"; we read its first frame as a JPEG
DEFAULT_MAX_PIXELS = 40_000_000
# Ordinary progressive JPEGs have about 10 scans (libjpeg's default script), an MPO a few per frame; libjpeg-turbo's
# fuzzers stop at 500. The count is of SOS markers in the whole file (embedded thumbnails included): cheap, and
# an overestimate, never an under-count (0xFF 0xDA cannot occur inside entropy-coded data, which stuffs 0xFF).
MAX_JPEG_SCANS = 100
_ROW_CHUNK = 256  # 16-bit conversion works on this many rows at a time, so no full-size temporaries

# Our own limit is enforced before decoding; PIL's warning-only limit would just add noise.
Image.MAX_IMAGE_PIXELS = None
# A truncated file must be an error, never an image with grey filled in (another library may have flipped this).
ImageFile.LOAD_TRUNCATED_IMAGES = False

# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose does).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageProbe:
    """What the header says, before any pixel is decoded."""

    format: str
    width: int  # as displayed (EXIF orientation applied)
    height: int
    decoded_pixels: int  # pixels the decode will produce (fewer than width*height for a reduced JPEG)


@dataclass
class DecodedImage:
    """Decoded pixels plus the size of the image as sent: `pixels` may be smaller (a reduced JPEG decode).

    Not frozen: a holder that accounts for the pixels' memory (the service's pixel budget) drops them when done.
    """

    pixels: npt.NDArray[np.uint8]  # (h, w, 3) RGB, display orientation
    width: int  # of the image as sent, display orientation
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from `pixels` coordinates to coordinates of the image as sent."""
        return self.width / self.pixels.shape[1], self.height / self.pixels.shape[0]

    def to_sent(self, detections: Detections) -> Detections:
        """Boxes from `pixels` coordinates to those of the image (or video frame) as sent (they differ after a
        reduced decode), clipped to it; `detections` itself after a full-size decode."""
        sx, sy = self.scale
        if (sx, sy) == (1.0, 1.0) or len(detections) == 0:
            return detections
        xyxy = detections.xyxy * np.array([sx, sy, sx, sy], np.float32)
        np.clip(xyxy[:, 0::2], 0, self.width, out=xyxy[:, 0::2])
        np.clip(xyxy[:, 1::2], 0, self.height, out=xyxy[:, 1::2])
        return replace(detections, xyxy=xyxy.astype(np.float32))


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode JPEG/PNG/BMP/WebP bytes to an RGB `(H, W, 3)` uint8 array in display orientation, full size."""
    return decode_image_scaled(data, max_pixels).pixels


def probe_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, reduce_to: tuple[int, int] | None = None
) -> ImageProbe:
    """Read only the header: format and size checks (the same errors as decoding) and the decoded pixel count."""
    with _open(data, max_pixels) as img:
        _check_scans(data, img)
        width, height = _displayed_size(img)
        scaled = _jpeg_scaled_size(data, img, reduce_to)
        pixels = scaled[0] * scaled[1] if scaled else width * height
        return ImageProbe(_OPENED_AS.get(str(img.format), str(img.format)), width, height, pixels)


def decode_image_scaled(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, reduce_to: tuple[int, int] | None = None
) -> DecodedImage:
    """Decode like `decode_image`; with `reduce_to=(h, w)` (a model's input), a JPEG larger than twice what a
    letterbox to that size keeps is decoded at the smallest DCT scale (1/2 .. 1/8) that still covers it."""
    with _open(data, max_pixels) as img:
        _check_scans(data, img)
        width, height = _displayed_size(img)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL warns about odd EXIF; the image is still usable
                if img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L"):
                    pixels = _decode_jpeg(data, img, reduce_to)
                else:  # PNG, BMP, WebP, and CMYK/YCCK JPEGs (PIL's own colour conversion, as before)
                    if img.format in ("JPEG", "MPO"):
                        _check_jpeg_strictly(data)
                    img.load()
                    pixels = _to_rgb(_upright(img))
        except (OSError, ValueError, SyntaxError) as exc:
            # PIL raises OSError("image file is truncated ...") for cut-off files, SyntaxError for broken PNG
            # chunks; simplejpeg raises ValueError("Corrupt JPEG data: ...") for missing or damaged scan data.
            raise InvalidImageError(f"image data is corrupt or truncated: {exc}") from exc
    return DecodedImage(pixels, width, height)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImageError("image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, ImportError) as exc:
        # ImportError: an opener plugin registered by another library (Ultralytics adds a HEIF one) tried to import
        # its decoder while PIL probed bytes no format recognised. Either way, the bytes are not an image we read.
        raise InvalidImageError("cannot identify image: the bytes are not a JPEG, PNG, BMP or WebP image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"cannot read image header: {exc}") from exc
    if _OPENED_AS.get(str(img.format), img.format) not in ACCEPTED_FORMATS:
        img.close()
        raise UnsupportedImageFormatError(
            f"image format {img.format} is not accepted; send one of: {', '.join(ACCEPTED_FORMATS)}"
        )
    width, height = img.size
    if width < 1 or height < 1:
        img.close()
        raise InvalidImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        img.close()
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
        )
    return img


def _check_scans(data: bytes, img: Image.Image) -> None:
    if img.format in ("JPEG", "MPO"):
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise InvalidImageError(
                f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are accepted (ordinary progressive JPEGs have"
                " about 10): re-encode it"
            )


def _check_jpeg_strictly(data: bytes) -> None:
    """Decode the entropy-coded data at the smallest DCT scale, strictly (any missing or corrupt scan data is an
    error), without keeping the result: for JPEGs PIL decodes (CMYK/YCCK), whose decoder fills gaps with grey."""
    simplejpeg.decode_jpeg(data, colorspace="CMYK", strict=True, min_height=1, min_width=1)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: PIL's exif_transpose would ignore it too
        return 1


def _displayed_size(img: Image.Image) -> tuple[int, int]:
    width, height = img.size
    return (height, width) if _orientation(img) in (5, 6, 7, 8) else (width, height)


def _jpeg_scaled_size(data: bytes, img: Image.Image, reduce_to: tuple[int, int] | None) -> tuple[int, int] | None:
    """(width, height) a reduced JPEG decode produces (stored orientation); None: decoded at full size."""
    minimum = _jpeg_minimum(img, reduce_to)
    if minimum is None:
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data, min_height=minimum[0], min_width=minimum[1])
    except ValueError as exc:
        raise InvalidImageError(f"cannot read JPEG header: {exc}") from exc
    return int(width), int(height)


def _jpeg_minimum(img: Image.Image, reduce_to: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (height, width), in stored orientation, of the power-of-two DCT scale that a letterbox into `reduce_to`
    still gets every pixel from (`halvings_for`); libjpeg-turbo then picks exactly that scale. None: full size."""
    if reduce_to is None or img.format not in ("JPEG", "MPO") or img.mode not in ("RGB", "L"):
        return None
    width, height = _displayed_size(img)
    k = halvings_for((height, width), reduce_to)
    if k == 0:
        return None
    stored_w, stored_h = img.size
    return -(-stored_h // 2**k), -(-stored_w // 2**k)


def _upright(img: Image.Image) -> Image.Image:
    """`img` in display orientation; itself when already upright (ImageOps.exif_transpose copies it then, a
    full-size copy for nothing)."""
    method = _ORIENT.get(_orientation(img))
    return img if method is None else img.transpose(method)


def _decode_jpeg(data: bytes, img: Image.Image, reduce_to: tuple[int, int] | None) -> npt.NDArray[np.uint8]:
    minimum = _jpeg_minimum(img, reduce_to) or (0, 0)
    pixels: npt.NDArray[np.uint8] = simplejpeg.decode_jpeg(
        data, colorspace="RGB", min_height=minimum[0], min_width=minimum[1], strict=True
    )
    method = _ORIENT.get(_orientation(img))
    if method is not None:
        pixels = np.ascontiguousarray(np.asarray(Image.fromarray(pixels).transpose(method), dtype=np.uint8))
    return pixels


def _to_rgb(img: Image.Image) -> npt.NDArray[np.uint8]:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _gray16_to_rgb(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency over white, as viewers show it, rather than exposing hidden colour values.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _gray16_to_rgb(img: Image.Image) -> npt.NDArray[np.uint8]:
    """16- and 32-bit integer grayscale -> 8-bit RGB, rescaled rather than clipped at 255.

    Row chunk by row chunk into the output, in integers: no float64 copy of the image (8 bytes a pixel, which
    made a 6300x6300 PNG of 77 KB cost 1.7 GB with four at once). 16-bit: v // 257 maps 0..65535 onto 0..255
    exactly as floor(v * 255 / 65535).
    """
    width, height = img.size
    out = np.empty((height, width, 3), np.uint8)
    sixteen = img.mode.startswith("I;16")
    extrema = img.getextrema()  # (min, max) for a single-band image
    top_value = extrema[1] if isinstance(extrema[1], int | float) else 1
    peak = 65535 if sixteen else max(int(top_value), 1)  # mode "I" (int32): stretch to its own maximum
    for top in range(0, height, _ROW_CHUNK):
        # A band at a time, also out of PIL: np.asarray(img) would first copy the whole image to bytes.
        rows = np.asarray(img.crop((0, top, width, min(top + _ROW_CHUNK, height))))
        if sixteen:
            gray = (rows // 257).astype(np.uint8)
        else:
            gray = np.clip(rows.astype(np.int64) * 255 // peak, 0, 255).astype(np.uint8)
        out[top : top + len(rows)] = gray[:, :, None]
    return out


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Read an image file with the same rules as `decode_image`; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidImageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return decode_image(data, max_pixels)
    except InvalidImageError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{path}: {exc}") from exc
