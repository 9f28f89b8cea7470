"""An HTTP MJPEG stream's JPEGs, each given once its last byte is in (detector/runtime/mjpeg_parts.py): at its End Of
Image where the part has no Content-Length, by the length where it has one, at the next boundary for what is not a
JPEG."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector.runtime.mjpeg_parts import JpegParts


def _jpegs(n: int = 6, restarts: bool = False) -> list[bytes]:
    rng = np.random.default_rng(n)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] + ([cv2.IMWRITE_JPEG_RST_INTERVAL, 4] if restarts else [])
    # Grain: the scans are full of 0xFF bytes (stuffed as FF 00) and, with restart intervals, of FF D0-D7.
    noise = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]
    return [cv2.imencode(".jpg", picture, params)[1].tobytes() for picture in noise]


def _with_thumbnail(jpeg: bytes) -> bytes:
    """`jpeg` with an EXIF segment (APP1) holding a whole small JPEG, End Of Image marker included, as phones and some
    cameras write."""
    thumbnail = cv2.imencode(".jpg", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
    app1 = b"Exif\0\0" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]


def _part(body: bytes, sized: bool, boundary: bytes = b"--frame", eol: bytes = b"\r\n") -> bytes:
    length = b"content-LENGTH: %d" % len(body) + eol if sized else b""
    return boundary + eol + b"Content-Type: image/jpeg" + eol + length + eol + body + eol


@pytest.mark.parametrize("sized", [True, False])
@pytest.mark.parametrize("restarts", [False, True])
def test_every_part_whole_for_any_split(sized: bool, restarts: bool) -> None:
    jpegs = _jpegs(restarts=restarts)
    jpegs[2] = _with_thumbnail(jpegs[2])
    stream = b"\r\n" + b"".join(_part(j, sized) for j in jpegs)
    for split in (len(stream), 1000, 97, 7, 1):
        parts = JpegParts()
        got = [p for at in range(0, len(stream), split) for p in parts.push(stream[at : at + split])]
        assert got + parts.flush() == jpegs, split


def test_each_part_is_given_when_its_last_byte_comes() -> None:
    # Not when the next boundary does (FFmpeg's way without a length): the camera sends that with its next frame.
    jpegs = _jpegs()
    jpegs[1] = _with_thumbnail(jpegs[1])  # the thumbnail's End Of Image is not the part's
    parts = JpegParts()
    for jpeg in jpegs:
        whole = _part(jpeg, sized=False)
        body_end = whole.index(jpeg) + len(jpeg)
        assert parts.push(whole[: body_end - 1]) == []  # all but the last byte
        assert parts.push(whole[body_end - 1 : body_end]) == [jpeg]
        assert parts.push(whole[body_end:]) == []  # the CRLF after it


def test_a_part_that_is_not_a_jpeg_ends_at_the_next_boundary_or_its_length() -> None:
    jpegs = _jpegs(3)
    odd = b"not a picture, \r\n--frame inside"  # only its length can say where it ends
    stream = _part(jpegs[0], False) + _part(b"not a picture", False) + _part(jpegs[1], False) + _part(odd, True)
    parts = JpegParts()
    assert parts.push(stream + _part(jpegs[2], False)) == [jpegs[0], b"not a picture", jpegs[1], odd, jpegs[2]]


def test_lines_ending_in_lf_alone() -> None:
    # Some cameras end their multipart lines in LF only (FFmpeg's reader takes them too).
    jpegs = _jpegs(3)
    odd = b"text\n--frame inside"
    sized = (False, True, False)
    stream = b"".join(_part(j, s, eol=b"\n") for j, s in zip(jpegs, sized, strict=True))
    stream += _part(odd, True, eol=b"\n") + b"--frame\n\nplain\n--frame\n\n"
    parts = JpegParts()
    assert parts.push(stream) == [*jpegs, odd, b"plain"]


def test_bytes_after_a_jpegs_end_and_another_boundary_name() -> None:
    jpegs = _jpegs(3)
    stream = b"".join(_part(j + b"\0\0padding", False, b"--myboundary") for j in jpegs)
    parts = JpegParts()
    assert parts.push(stream) == jpegs


def test_a_part_past_the_bound_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    import detector.runtime.mjpeg_parts as mjpeg_parts

    jpegs = _jpegs(2)
    monkeypatch.setattr(mjpeg_parts, "MAX_PART", 4 * max(len(j) for j in jpegs))
    endless = b"\xff\xd8\xff\xda\x00\x02" + b"\x11" * (8 * mjpeg_parts.MAX_PART)  # a scan that never ends
    parts = JpegParts()
    got = parts.push(_part(jpegs[0], False))
    for at in range(0, len(endless), 10_000):
        got += parts.push((b"--frame\r\n\r\n" if at == 0 else b"") + endless[at : at + 10_000])
    got += parts.push(b"\r\n" + _part(jpegs[1], False))
    assert got == jpegs
