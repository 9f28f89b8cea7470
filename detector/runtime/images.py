"""Image bytes -> RGB uint8 array, safely: format whitelist, pixel limit checked from the header before decoding
(decompression bombs), EXIF orientation applied, grayscale/RGBA/palette/16-bit converted, truncation detected.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from detector.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
DEFAULT_MAX_PIXELS = 40_000_000

# Our own limit is enforced before decoding; PIL's warning-only limit would just add noise.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode JPEG/PNG/BMP/WebP bytes to an RGB `(H, W, 3)` uint8 array in display orientation."""
    if not data:
        raise InvalidImageError("image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, ImportError) as exc:
        # ImportError: an opener plugin registered by another library (Ultralytics adds a HEIF one) tried to import
        # its decoder while PIL probed bytes no format recognised. Either way, the bytes are not an image we read.
        raise InvalidImageError("cannot identify image: the bytes are not a JPEG, PNG, BMP or WebP image") from exc
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"cannot read image header: {exc}") from exc
    with img:
        if img.format not in ACCEPTED_FORMATS:
            raise UnsupportedImageFormatError(
                f"image format {img.format} is not accepted; send one of: {', '.join(ACCEPTED_FORMATS)}"
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise InvalidImageError(f"image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL warns about odd EXIF; the image is still usable
                img.load()
                oriented = ImageOps.exif_transpose(img)
            return _to_rgb(oriented)
        except (OSError, ValueError, SyntaxError) as exc:
            # PIL raises OSError("image file is truncated ...") for cut-off files, SyntaxError for broken PNG chunks.
            raise InvalidImageError(f"image data is corrupt or truncated: {exc}") from exc


def _to_rgb(img: Image.Image) -> npt.NDArray[np.uint8]:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit integer grayscale: rescale to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        gray = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency over white, as viewers show it, rather than exposing hidden colour values.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


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
