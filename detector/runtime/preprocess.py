"""Letterbox pre-processing shared by every backend.

Matches Ultralytics' `LetterBox(auto=False, center=True)` bit for bit (same rounding, same padding value, same
interpolation), so a model sees exactly what it saw in Ultralytics' own validation and prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from detector.errors import InvalidInputError

PAD_VALUE = 114
# Pixels become `pixel * PIXEL_SCALE` in float32. A model that takes uint8 pixels (a TensorRT engine built with
# `export.engine.input_dtype: uint8`) does this same multiplication itself, first thing in its graph.
PIXEL_SCALE = np.float32(1.0 / 255.0)


@dataclass(frozen=True)
class LetterboxInfo:
    """How one original image maps into the network input: `input = original * gain + pad`."""

    orig_shape: tuple[int, int]  # (height, width) of the original image
    gain: tuple[float, float]  # (gain_x, gain_y) from per-side rounding of the resized size
    pad: tuple[int, int]  # (left, top) padding in input pixels


def letterbox_params(
    orig_shape: tuple[int, int], input_shape: tuple[int, int]
) -> tuple[tuple[int, int], LetterboxInfo]:
    """Resized (width, height) and the mapping, for an image of `orig_shape` into `input_shape` (both (h, w))."""
    h0, w0 = orig_shape
    h1, w1 = input_shape
    r = min(h1 / h0, w1 / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = (w1 - new_w) / 2, (h1 - new_h) / 2
    left, top = round(dw - 0.1), round(dh - 0.1)
    return (new_w, new_h), LetterboxInfo(orig_shape=(h0, w0), gain=(new_w / w0, new_h / h0), pad=(left, top))


MAX_HALVINGS = 3  # 1/8: the smallest of the power-of-two scales that libjpeg-turbo and FFmpeg decode at directly


def halvings_for(orig_shape: tuple[int, int], input_shape: tuple[int, int]) -> int:
    """How often an image of `orig_shape` (h, w) can be halved while a letterbox into `input_shape` (h, w) still
    gets a source pixel for each of its own: the largest k <= 3 with 1 / 2**k at least the letterbox's downscale.

    JPEG DCT scaling and FFmpeg's `lowres` decode at 1/2, 1/4, 1/8 directly. Only powers of two: libjpeg-turbo
    decodes those with SIMD and the M/8 scales between without, so a 1920x1080 photo for a 640 px model took
    3.9 ms at 3/8 against 3.1 ms at 1/2 plus the larger resize (AMD EPYC, this project's photos)."""
    ratio = min(input_shape[0] / orig_shape[0], input_shape[1] / orig_shape[1])
    k = 0
    while k < MAX_HALVINGS and ratio * 2 ** (k + 1) <= 1.0:
        k += 1
    return k


def check_image(image: Any) -> npt.NDArray[np.uint8]:
    """Validate an image array: `(H, W, 3)` uint8 RGB. Raise InvalidInputError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"image must have shape (H, W, 3) in RGB order, got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"image is empty: shape {image.shape}")
    return image


def letterbox_into(image: npt.NDArray[np.uint8], out: npt.NDArray[Any]) -> LetterboxInfo:
    """Letterbox an RGB `(H, W, 3)` uint8 image into `out`, a `(3, h, w)` array slot: scaled to [0, 1] for a float
    `out`, the pixel values themselves (0-255) for a uint8 `out` (a model that normalises on its own)."""
    input_shape = (out.shape[1], out.shape[2])
    (new_w, new_h), info = letterbox_params((image.shape[0], image.shape[1]), input_shape)
    if (new_w, new_h) != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)  # type: ignore[assignment]
    left, top = info.pad
    # Fill only the borders, then write the resized image once, converting HWC uint8 -> CHW (float) on the way.
    raw = out.dtype == np.uint8
    pad_value = PAD_VALUE if raw else PAD_VALUE * PIXEL_SCALE
    out[:, :top, :] = pad_value
    out[:, top + new_h :, :] = pad_value
    out[:, top : top + new_h, :left] = pad_value
    out[:, top : top + new_h, left + new_w :] = pad_value
    region = out[:, top : top + new_h, left : left + new_w]
    if raw:
        # OpenCV's split writes each channel straight into its plane of `out` (the views are filled in place, any
        # source strides): 0.07 ms for a 640x480 image where NumPy's transposing copy took 0.28 ms (2-core Intel
        # Xeon VM; not measured on the AMD EPYC host). A view into a larger image (a tile, a crop) goes contiguous
        # first: OpenCV splits a strided source row by row, 8.5 ms for the 36 tiles of a 1280x1280 scene at 256 px
        # where copying each tile and splitting the copy took 0.9 ms (same VM).
        if not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)
        cv2.split(image, [region[0], region[1], region[2]])
    else:
        np.multiply(image.transpose(2, 0, 1), PIXEL_SCALE, out=region, casting="unsafe")
    return info


def letterbox_batch(images: Sequence[npt.NDArray[np.uint8]], out: npt.NDArray[Any]) -> list[LetterboxInfo]:
    """Letterbox RGB uint8 images into `out[i]`, a `(B, 3, h, w)` array the caller provides (e.g. the page-locked
    buffer a TensorRT backend uploads from, so no batch array exists in between)."""
    if len(images) != out.shape[0]:
        raise InvalidInputError(f"{len(images)} images for a batch of {out.shape[0]}")
    return [letterbox_into(check_image(img), out[i]) for i, img in enumerate(images)]


def preprocess_batch(
    images: Sequence[npt.NDArray[np.uint8]], input_shape: tuple[int, int], dtype: npt.DTypeLike = np.float32
) -> tuple[npt.NDArray[Any], list[LetterboxInfo]]:
    """Letterbox RGB uint8 images into one contiguous `(B, 3, h, w)` array of `dtype`: in [0, 1] for float types,
    0-255 pixels for uint8 (a model that normalises on its own)."""
    if len(images) == 0:
        raise InvalidInputError("no images to process")
    raw = np.dtype(dtype) == np.uint8
    batch = np.empty((len(images), 3, *input_shape), dtype=np.uint8 if raw else np.float32)
    infos = letterbox_batch(images, batch)
    if not raw and np.dtype(dtype) != np.float32:
        batch = batch.astype(dtype)
    return batch, infos
