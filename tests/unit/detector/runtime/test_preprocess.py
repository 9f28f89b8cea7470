"""Letterbox and its inverse: geometry, padding, dtype, and equality with Ultralytics' LetterBox."""

from __future__ import annotations

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime.postprocess import scale_boxes
from detector.runtime.preprocess import PAD_VALUE, letterbox_params, preprocess_batch


@pytest.mark.parametrize(
    ("orig", "target", "resized", "pad"),
    [
        ((480, 640), (640, 640), (640, 480), (0, 80)),  # landscape: pad top/bottom
        ((640, 480), (640, 640), (480, 640), (80, 0)),  # portrait: pad left/right
        ((640, 640), (640, 640), (640, 640), (0, 0)),  # exact fit
        ((100, 50), (128, 128), (64, 128), (32, 0)),  # upscale
        ((1, 3000), (128, 128), (128, 1), (0, 63)),  # thin image keeps 1 pixel; top = round(63.5 - 0.1)
        ((481, 641), (256, 256), (256, 192), (0, 32)),  # odd sizes round like Ultralytics
    ],
)
def test_letterbox_params(orig, target, resized, pad) -> None:
    (w, h), info = letterbox_params(orig, target)
    assert (w, h) == resized
    assert info.pad == pad
    assert info.orig_shape == orig


def test_preprocess_layout_and_padding() -> None:
    image = np.zeros((50, 100, 3), np.uint8)
    image[..., 0] = 255  # pure red in RGB
    batch, (info,) = preprocess_batch([image], (128, 128))
    assert batch.shape == (1, 3, 128, 128) and batch.dtype == np.float32 and batch.flags.c_contiguous
    left, top = info.pad
    assert (left, top) == (0, 32)
    np.testing.assert_allclose(batch[0, :, :top, :], PAD_VALUE / 255, rtol=1e-6)
    np.testing.assert_allclose(batch[0, :, top + 64 :, :], PAD_VALUE / 255, rtol=1e-6)
    inner = batch[0, :, top : top + 64, :]
    assert np.allclose(inner[0], 1.0) and np.allclose(inner[1:], 0.0)  # channel 0 is R: RGB order is kept


def test_preprocess_matches_ultralytics_letterbox() -> None:
    LetterBox = pytest.importorskip("ultralytics.data.augment").LetterBox
    rng = np.random.default_rng(0)
    for shape in [(480, 640, 3), (333, 517, 3), (1024, 256, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = LetterBox((256, 256), auto=False, stride=32)(image=image)  # HWC uint8
        batch, _ = preprocess_batch([image], (256, 256))
        ours = np.round(batch[0].transpose(1, 2, 0) * 255).astype(np.uint8)
        np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize(
    "view",
    [
        pytest.param(lambda a: a, id="contiguous"),
        pytest.param(lambda a: a[7:300, 11:420], id="crop of a bigger image (a tile)"),
        pytest.param(lambda a: a[7:263, 11:267], id="a tile of the model's size (no resize, strided rows)"),
        pytest.param(lambda a: a[:, :, ::-1], id="channels reversed (a BGR view)"),
        pytest.param(lambda a: a[::-1, ::2], id="rows reversed, every other column"),
    ],
)
def test_uint8_letterbox_matches_ultralytics_for_any_source_layout(view) -> None:
    """The uint8 path (a model that scales pixels itself) writes each channel into its plane of the batch with
    OpenCV's split: equal to Ultralytics' LetterBox, whatever the source array's strides; the padding is 114."""
    LetterBox = pytest.importorskip("ultralytics.data.augment").LetterBox
    image = view(np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    for target in [(256, 256), (480, 640), (224, 320)]:
        expected = LetterBox(target, auto=False, stride=32)(image=np.ascontiguousarray(image))
        batch, (info, _) = preprocess_batch([image, image], target, np.uint8)
        assert batch.dtype == np.uint8 and batch.shape == (2, 3, *target)
        np.testing.assert_array_equal(batch[0].transpose(1, 2, 0), expected)
        np.testing.assert_array_equal(batch[1], batch[0])
        left, top = info.pad
        if top:
            assert (batch[:, :, :top] == PAD_VALUE).all()
        if left:
            assert (batch[:, :, :, :left] == PAD_VALUE).all()


def test_scale_boxes_inverts_letterbox() -> None:
    orig = (480, 640)
    _, info = letterbox_params(orig, (640, 640))
    boxes = np.array([[10, 20, 300, 400], [0, 0, 640, 480]], np.float32)
    gx, gy = info.gain
    left, top = info.pad
    in_input = boxes * np.array([gx, gy, gx, gy], np.float32) + np.array([left, top, left, top], np.float32)
    np.testing.assert_allclose(scale_boxes(in_input, info), boxes, atol=1e-3)


def test_scale_boxes_clips_to_image() -> None:
    _, info = letterbox_params((100, 200), (128, 128))
    out = scale_boxes(np.array([[-50, -50, 1000, 1000]], np.float32), info)
    np.testing.assert_array_equal(out, [[0, 0, 200, 100]])


def test_preprocess_fp16_dtype() -> None:
    batch, _ = preprocess_batch([np.zeros((10, 10, 3), np.uint8)], (32, 32), np.float16)
    assert batch.dtype == np.float16


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), np.uint8), "shape (H, W, 3)"),
        (np.zeros((10, 10, 4), np.uint8), "shape (H, W, 3)"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_preprocess_rejects_bad_arrays(image, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preprocess_batch([image], (32, 32))
