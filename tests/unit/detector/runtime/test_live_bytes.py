"""A live stream's bytes shared between FFmpeg's opening and the reading after it (detector/runtime/live_bytes.py)."""

from __future__ import annotations

import av

from detector.runtime.live_bytes import SharedBytes


class _Packet(bytes):
    @property
    def size(self) -> int:
        return len(self)


class _Raw:
    """A stand-in for a container opened with format="data": its chunks, an empty packet at the end."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.closed = chunks, False

    def demux(self) -> object:
        return iter([*(_Packet(c) for c in self.chunks), _Packet()])

    def close(self) -> None:
        self.closed = True


def test_rest_gives_every_byte_from_the_first() -> None:
    raw = _Raw([b"abcdef", b"gh", b"ijkl"])
    shared = SharedBytes(raw)
    assert shared.read(4) == b"abcd" and shared.read(10) == b"ef" and shared.read(1) == b"g"
    assert b"".join(shared.rest()) == b"abcdefghijkl"
    shared.close()
    assert raw.closed


def test_what_ffmpeg_reads_alone_is_not_kept() -> None:
    shared = SharedBytes(_Raw([b"ab", b"cd", b"ef"]))
    assert shared.read() == b"ab"
    shared.let_go()
    assert shared.read() == b"cd" and b"".join(shared.rest()) == b"ef"


def test_ffmpeg_opens_a_stream_from_the_shared_bytes() -> None:
    import numpy as np

    from benchmarks.cameras import ts_chunks

    chunks = ts_chunks((np.full((64, 64, 3), 40 * i, np.uint8) for i in range(5)), 10)
    shared = SharedBytes(_Raw(chunks))
    with av.open(shared, "r") as container:
        assert container.format.name == "mpegts" and container.streams.video[0].codec_context.name == "h264"
        assert b"".join(shared.rest()) == b"".join(chunks)
