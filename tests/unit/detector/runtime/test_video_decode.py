"""`read_frames` decodes with FFmpeg through PyAV: frames at the reduced size a model needs where the codec can
(mp4v yes, H.264 no), every frame shrunk to the letterbox's size before it becomes RGB, MJPEG packets between two
`vid_stride` frames never decoded, the full-size pixel limit still applied to reduced frames, and nothing but the
whitelisted containers opened."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from detector.errors import ImageTooLargeError, InvalidInputError
from detector.runtime import video
from detector.runtime.video import (
    DAMAGED,
    MAX_DAMAGED_IN_A_ROW,
    SKIPPED,
    NotAVideoError,
    fit_size,
    lowres_for,
    probe_video,
    read_frames,
)
from tests.clips import b_frames, turn_mp4, write_mjpeg_of_sizes, write_vfr_clip

W, H = 640, 480


def _frames(n: int) -> list[np.ndarray]:
    """Smooth RGB frames with structure at every scale (a reduced decode should look like a resized one)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    out = []
    for i in range(n):
        r = 128 + 100 * np.sin(x / 37 + i / 3)
        g = 128 + 100 * np.cos(y / 29 - i / 5)
        b = 128 + 100 * np.sin((x + y) / 53)
        out.append(np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8))
    return out


def _mp4v(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (W, H))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _h264(path: Path, frames: list[np.ndarray]) -> Path:
    return _encoded(path, frames, "libx264", {})


@pytest.mark.parametrize(
    ("size", "reduce_to", "lowres"),
    [
        ((1280, 720), None, 0),
        ((1280, 720), (256, 256), 2),  # 0.2 of the width: 1/4 (320x180) still has every pixel needed
        ((1280, 720), (640, 640), 1),
        ((1280, 720), (1280, 1280), 0),
        ((1280, 720), (720, 1280), 0),
        ((8000, 8000), (256, 256), 3),  # at most 1/8
        ((640, 480), (128, 128), 2),
        ((0, 0), (128, 128), 0),
    ],
)
def test_lowres_is_the_largest_reduction_the_letterbox_still_needs(
    size: tuple[int, int], reduce_to: tuple[int, int] | None, lowres: int
) -> None:
    assert lowres_for(*size, reduce_to) == lowres


@pytest.mark.parametrize(
    ("size", "reduce_to", "fit"),
    [
        ((1280, 720), (256, 256), (256, 144)),  # the letterbox's scaled size
        ((320, 180), (256, 256), (256, 144)),  # after a 1/4 decode
        ((1281, 721), (256, 256), (256, 144)),
        ((1000, 1000), (100, 100), (100, 100)),
        ((1000, 998), (101, 101), (102, 102)),  # rounded up to even for 4:2:0
        ((640, 360), (640, 640), None),  # no larger than the letterbox: untouched
        ((1280, 720), None, None),
    ],
)
def test_frames_shrink_to_the_letterbox_size_rounded_up_to_even(
    size: tuple[int, int], reduce_to: tuple[int, int] | None, fit: tuple[int, int] | None
) -> None:
    assert fit_size(*size, reduce_to) == fit


def _like(small: np.ndarray, big: np.ndarray) -> bool:
    """`small` is `big` shrunk (the same picture, not a crop, a shift or garbage)."""
    resized = cv2.resize(big, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    return float(np.abs(resized.astype(int) - small).mean()) < 6  # 3.5-4 here; the next frame: 12, mirrored: 56+


def test_mp4v_frames_decode_reduced_and_look_like_the_full_ones_shrunk(tmp_path: Path) -> None:
    path = _mp4v(tmp_path / "clip.mp4", _frames(6))
    full = list(read_frames(path))
    reduced = list(read_frames(path, reduce_to=(128, 128)))
    assert (
        [(i, run) for i, _, run, _ in reduced] == [(i, run) for i, _, run, _ in full] == [(i, True) for i in range(6)]
    )
    for (_, big, _, _), (_, small, _, _) in zip(full, reduced, strict=True):
        assert big.shape == (H, W, 3) and small.shape == (96, 128, 3)  # decoded at 160x120, then shrunk
        assert _like(small, big)


def test_h264_decodes_whole_and_is_shrunk_before_conversion(tmp_path: Path) -> None:
    frames = _frames(4)
    path = _h264(tmp_path / "clip.mp4", frames)
    whole = list(read_frames(path))
    got = list(read_frames(path, reduce_to=(128, 128)))
    assert len(got) == len(whole) == 4
    assert all(pixels.shape == (H, W, 3) for _, pixels, _, _ in whole) and _like(whole[0][1], frames[0])
    assert all(pixels.shape == (96, 128, 3) for _, pixels, _, _ in got)
    assert all(_like(small, big) for (_, small, _, _), (_, big, _, _) in zip(got, whole, strict=True))


@pytest.mark.parametrize("size", [(202, 98), (100, 60), (640, 480)])
def test_frames_shrink_from_the_decoders_padded_planes_as_from_a_copy_of_them(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    # The planes are read where the decoder left them: rows padded past the width (202 -> 256 bytes here) must not
    # leak into the picture. The reference: `to_ndarray()`'s contiguous copy, each plane resized, then converted.
    import av

    width, height = size
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in _frames(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(cv2.resize(frame, size), format="rgb24")))
        out.mux(stream.encode(None))
    to = (width // 4 * 2, height // 4 * 2)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yuv = frame.to_ndarray()
            y = cv2.resize(yuv[:height], to, interpolation=cv2.INTER_LINEAR)
            u, v = (
                cv2.resize(plane, (to[0] // 2, to[1] // 2), interpolation=cv2.INTER_LINEAR)
                for plane in yuv[height:].reshape(2, height // 2, width // 2)
            )
            i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(to[1] * 3 // 2, to[0])
            assert np.array_equal(video._rgb(frame, to), cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420))
    if width % 64:
        assert frame.planes[0].line_size > width  # rows padded: the case this test is for


def test_reduced_frames_are_held_to_the_pixel_limit_at_full_size(tmp_path: Path) -> None:
    path = _mp4v(tmp_path / "clip.mp4", _frames(2))
    with pytest.raises(ImageTooLargeError, match="more than 100000 pixels"):
        next(read_frames(path, max_pixels=100_000, reduce_to=(128, 128)))  # 160x120 decoded, 640x480 sent
    assert next(read_frames(path, max_pixels=W * H, reduce_to=(128, 128)))[1].shape == (96, 128, 3)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_clip_shown_turned_comes_upright_as_opencv_reads_it(tmp_path: Path, degrees: int) -> None:
    # A phone's portrait clip: landscape pixels, a display matrix turning them. Before: frames came lying on their
    # side while the probe (OpenCV) gave the turned size, so boxes were stretched from 640x480 to 480x640.
    frames = _frames(2)
    path = turn_mp4(_mp4v(tmp_path / "plain.mp4", frames), tmp_path / "turned.mp4", degrees)
    info = probe_video(path)
    capture = cv2.VideoCapture(str(path))
    shown = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in frames]
    capture.release()
    assert (info.height, info.width, 3) == shown[0].shape == ((H, W, 3) if degrees == 180 else (W, H, 3))
    whole = [pixels for _, pixels, _, _ in read_frames(path)]
    assert all(np.abs(got.astype(int) - want).mean() < 2 for got, want in zip(whole, shown, strict=True))
    # Reduced: shrunk to the letterbox size of the frame as shown (256x128 input: 96x128 portrait, 172x128 landscape).
    reduced = [pixels for _, pixels, _, _ in read_frames(path, reduce_to=(128, 256))]
    assert all(p.shape == ((128, 172, 3) if degrees == 180 else (128, 96, 3)) for p in reduced)
    assert all(_like(small, big) for small, big in zip(reduced, shown, strict=True))


def test_a_frame_larger_than_the_stream_declares_is_held_to_the_pixel_limit(tmp_path: Path) -> None:
    # The header says 64x48 (the first frame); the second frame is 640x480 = 307200 pixels.
    path = write_mjpeg_of_sizes(tmp_path / "clip.avi", [(64, 48), (640, 480), (64, 48)])
    assert [p.shape for _, p, _, _ in read_frames(path)] == [(48, 64, 3), (480, 640, 3), (48, 64, 3)]
    for reduce_to in (None, (32, 32)):
        frames = read_frames(path, max_pixels=100_000, reduce_to=reduce_to)
        assert next(frames)[0] == 0
        # Before: with reduce_to (decoded at half size) the limit saw 320x240 and let the frame through.
        with pytest.raises(ImageTooLargeError, match="frame 1 has more than 100000 pixels"):
            next(frames)
    # Within the limit, each frame comes at its own size (reduced: 1/2 the 64x48 ones, 1/8 the 640x480 one, then
    # shrunk to 32 px: the same letterbox size whatever the frame's).
    assert [p.shape for _, p, _, _ in read_frames(path, max_pixels=640 * 480, reduce_to=(32, 32))] == [(24, 32, 3)] * 3


def test_a_frame_far_over_the_limit_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # 1280x1024 is over FFmpeg's own bound here (twice the limit, at least a megapixel): FFmpeg refuses it before
    # allocating it (before: decoded whole, then refused).
    path = write_mjpeg_of_sizes(tmp_path / "clip.avi", [(64, 48), (1280, 1024)])
    for reduce_to in (None, (32, 32)):
        frames = read_frames(path, max_pixels=100_000, reduce_to=reduce_to)
        assert next(frames)[0] == 0
        with pytest.raises(ImageTooLargeError, match="a frame after frame 0 has more than 100000 pixels"):
            next(frames)
    assert [p.shape for _, p, _, _ in read_frames(path)][1] == (1024, 1280, 3)  # a valid frame, without a limit


def _mjpeg_with_garbage_between_strides(path: Path, stride: int, count: int) -> Path:
    """An AVI of MJPEG packets where every packet between two `stride` frames is not a JPEG at all."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i in range(count):
            if i % stride == 0:
                data = cv2.imencode(".jpg", np.full((48, 64, 3), 10 + i * 20, np.uint8))[1].tobytes()
            else:
                data = b"\xff\xd8" + b"not a picture" * 10
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 10)
            out.mux(packet)
    return path


def test_mjpeg_packets_between_strides_are_never_decoded(tmp_path: Path) -> None:
    path = _mjpeg_with_garbage_between_strides(tmp_path / "clip.avi", 3, 9)
    got = list(read_frames(path, vid_stride=3, keep_skipped=False))
    assert [(i, run) for i, _, run, _ in got] == [(i, i % 3 == 0) for i in range(9)]
    for i, pixels, run, _ in got:
        if run:
            assert pixels.shape == (48, 64, 3) and abs(int(pixels.mean()) - (10 + i * 20)) <= 3
        else:
            assert pixels is SKIPPED
    # Decoding them (a writer needs every frame) meets the garbage: each says so (DAMAGED), in its place.
    got = list(read_frames(path, vid_stride=3, keep_skipped=True))
    assert [(i, pixels is DAMAGED, run) for i, pixels, run, _ in got] == [(i, i % 3 != 0, i % 3 == 0) for i in range(9)]


def _encoded(path: Path, frames: list[np.ndarray], codec: str, options: dict[str, str]) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10, options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("name", "codec", "options", "stride"),
    [
        *((f"clip{suffix}", "libx264", {}, stride) for suffix in (".mp4", ".mkv", ".avi") for stride in (2, 3, 5)),
        ("hevc.mkv", "libx265", {"x265-params": "log-level=error"}, 3),  # x265's defaults: B-frames too
        ("mpeg2.mp4", "mpeg2video", {"bf": "2"}, 3),
    ],
)
def test_frames_none_refers_to_between_strides_are_never_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, codec: str, options: dict[str, str], stride: int
) -> None:
    # B-frames (most not referred to by any other frame), stored out of the order they are shown in.
    path = _encoded(tmp_path / name, _frames(40), codec, options)
    assert b_frames(path) >= 10
    every = list(read_frames(path, vid_stride=stride))  # each frame decoded: what a writer needs
    decoded: list[int] = []  # what came out of the decoder

    def counting(*args: Any) -> Iterator[tuple[int, Any, int | None]]:
        for index, frame, pts in real_decoded(*args):
            decoded.extend([index] if frame is not None and frame is not DAMAGED else [])
            yield index, frame, pts

    real_decoded = video._decoded
    monkeypatch.setattr(video, "_decoded", counting)
    kept = list(read_frames(path, vid_stride=stride, keep_skipped=False))
    assert [(i, run, t) for i, _, run, t in kept] == [(i, run, t) for i, _, run, t in every]
    assert [i for i, _, run, _ in kept if run] == list(range(0, 40, stride))
    for (i, pixels, run, _), (_, want, _, _) in zip(kept, every, strict=True):
        assert np.array_equal(pixels, want) if run else pixels is SKIPPED, i
    # Fewer decoded in MP4 and Matroska, which store when each packet is shown; every frame in AVI, which does not
    # (FFmpeg numbers its packets in stored order, so their places are not known before they are decoded).
    assert set(range(0, 40, stride)) <= set(decoded)
    assert len(decoded) <= 40 - 10 if not name.endswith(".avi") else len(decoded) == 40


def _grey_levels(frames: list[tuple[int, np.ndarray, bool]]) -> list[tuple[int, int | str, bool]]:
    return [
        (i, "damaged" if p is DAMAGED else "skipped" if p is SKIPPED else int(p.mean()), r) for i, p, r, _ in frames
    ]


def test_a_damaged_frame_is_skipped_and_the_frames_after_it_follow(tmp_path: Path) -> None:
    # Before: the first damaged frame ended the clip with an error; the frames after it were lost (OpenCV's reader
    # and players skip it and go on).
    sizes = [(64, 48)] * 8
    clean = write_mjpeg_of_sizes(tmp_path / "clean.avi", sizes)
    clip = write_mjpeg_of_sizes(tmp_path / "damaged.avi", sizes, damaged=frozenset({2, 5}))
    want = _grey_levels(list(read_frames(clean)))
    got = _grey_levels(list(read_frames(clip)))
    assert got == [(i, "damaged", False) if i in (2, 5) else want[i] for i in range(8)]
    # Every third frame, the others demuxed only: a damaged frame to process is skipped, the next one is processed.
    got = _grey_levels(list(read_frames(clip, vid_stride=5, keep_skipped=False)))
    assert [(i, level if level in ("damaged", "skipped") else "frame", run) for i, level, run in got] == [
        (0, "frame", True),
        *((i, "skipped", False) for i in (1, 2, 3, 4)),
        (5, "damaged", False),
        *((i, "skipped", False) for i in (6, 7)),
    ]
    # Reduced for a model's input: the same frames.
    assert [i for i, p, _, _ in read_frames(clip, reduce_to=(32, 32)) if p is not DAMAGED] == [0, 1, 3, 4, 6, 7]


def test_damaged_h264_packets_keep_the_frames_after_them_at_their_index(tmp_path: Path) -> None:
    clip = _h264(tmp_path / "clip.mp4", _frames(30))
    data = bytearray(clip.read_bytes())  # the frames' data first, the index (moov) at the end
    for at in (0.3, 0.5, 0.7):
        data[int(len(data) * at) : int(len(data) * at) + 3000] = bytes(3000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    got = list(read_frames(damaged))
    lost = [i for i, pixels, _, _ in got if pixels is DAMAGED]
    # Each damaged packet takes its frame's place: the indices (and times) of the frames after it stay right.
    assert [i for i, _, _, _ in got] == list(range(30)) and 0 < len(lost) < 30
    clean = list(read_frames(clip))
    for (i, pixels, _, _), (_, want, _, _) in zip(got[: lost[0]], clean, strict=False):
        assert np.array_equal(pixels, want), i
    # Strided, with the frames none refers to skipped between strides (these are x264's, with B-frames): every
    # place still comes once, in order, and the frames to process before the first loss are the clean clip's.
    strided = list(read_frames(damaged, vid_stride=2, keep_skipped=False))
    assert [i for i, _, _, _ in strided] == list(range(30))
    assert all(run == (i % 2 == 0 and pixels is not DAMAGED) for i, pixels, run, _ in strided)
    first_lost = min(i for i, pixels, _, _ in strided if pixels is DAMAGED)
    for (i, pixels, run, _), (_, want, _, _) in zip(strided[:first_lost], clean, strict=False):
        assert np.array_equal(pixels, want) if run else pixels is SKIPPED, i


def test_a_recording_cut_off_mid_frame_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    clip = write_mjpeg_of_sizes(tmp_path / "clip.avi", [(64, 48)] * 6)
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: data.rfind(b"\xff\xd8") + 200])  # the last JPEG cut short, the AVI's index gone
    got = _grey_levels(list(read_frames(cut)))
    assert got[:5] == _grey_levels(list(read_frames(clip)))[:5]
    assert got[5:] == [(5, "damaged", False)]
    assert probe_video(cut).width == 64


def test_a_clip_that_never_decodes_is_refused_after_a_bounded_number_of_packets(tmp_path: Path) -> None:
    few = write_mjpeg_of_sizes(tmp_path / "few.avi", [(64, 48)] * 3, damaged=frozenset(range(3)))
    with pytest.raises(InvalidInputError, match="no frame of the video can be decoded"):
        list(read_frames(few))
    with pytest.raises(InvalidInputError, match="no decodable frame"):
        probe_video(few)
    # Past a run of damaged packets the rest is taken as undecodable: the frames before it were given.
    count = MAX_DAMAGED_IN_A_ROW + 20
    many = write_mjpeg_of_sizes(tmp_path / "many.avi", [(64, 48)] * count, damaged=frozenset(range(1, count)))
    frames = read_frames(many)
    assert next(frames)[0] == 0
    assert all(f.pixels is DAMAGED for f in (next(frames) for _ in range(MAX_DAMAGED_IN_A_ROW - 1)))
    with pytest.raises(InvalidInputError, match=f"from frame 1 on \\({MAX_DAMAGED_IN_A_ROW} damaged packets in a row"):
        next(frames)


def test_a_damaged_first_frame_does_not_hide_the_clip_from_the_probe(tmp_path: Path) -> None:
    clip = write_mjpeg_of_sizes(tmp_path / "clip.avi", [(64, 48)] * 4, damaged=frozenset({0}))
    assert probe_video(clip) == probe_video(write_mjpeg_of_sizes(tmp_path / "clean.avi", [(64, 48)] * 4))
    assert [i for i, p, _, _ in read_frames(clip) if p is not DAMAGED] == [1, 2, 3]


def test_a_playlist_naming_a_local_clip_is_not_opened(tmp_path: Path) -> None:
    clip = _mp4v(tmp_path / "secret.mp4", _frames(2))
    for name in ("list.m3u8", "list.mp4", "list.txt"):
        playlist = tmp_path / name
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{clip}\n#EXT-X-ENDLIST\n")
        with pytest.raises(NotAVideoError):
            list(read_frames(playlist))
    concat = tmp_path / "list.ffconcat"
    concat.write_text(f"ffconcat version 1.0\nfile '{clip}'\n")
    with pytest.raises(NotAVideoError):
        list(read_frames(concat))


def test_frames_carry_the_time_they_are_shown_at_also_at_a_variable_frame_rate(tmp_path: Path) -> None:
    # 30 fps, then 10 fps (a phone in low light). index / fps (OpenCV's average rate: 15.8 here), what the lines
    # said before, put frame 30 at 1.89 s where it is shown at 0.99 s.
    times_ms = [33 * i for i in range(30)] + [990 + 100 * i for i in range(30)]
    clip = write_vfr_clip(tmp_path / "vfr.mp4", times_ms)
    frames = list(read_frames(clip))
    assert [f.number for f in frames] == list(range(60))
    assert [f.time_s for f in frames] == pytest.approx([t / 1000 for t in times_ms], abs=1e-6)
    # Demuxed only (every third frame of an MJPEG clip): the skipped frames keep their times too.
    mjpeg = write_mjpeg_of_sizes(tmp_path / "clip.avi", [(64, 48)] * 7, fps=10)
    got = list(read_frames(mjpeg, vid_stride=3, keep_skipped=False))
    assert [f.time_s for f in got] == pytest.approx([i / 10 for i in range(7)])
