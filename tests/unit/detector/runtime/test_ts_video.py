"""`PesPictures`: an MPEG-TS stream's PES packets, read without FFmpeg's parser, go to the decoder as they come while
each begins a picture; otherwise (and for other codecs or containers) the codec's own parser splits them, as FFmpeg's
would have. `begins_picture` on H.264 and H.265 access units, and MPEG-2 and MPEG-4 Part 2 pictures."""

from __future__ import annotations

import av
import numpy as np

from detector.runtime.ts_video import PesPictures, begins_picture
from tests.cameras import annex_b, h264_rgb, h265_rgb


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(n)]


def _packet(data: bytes) -> av.Packet:
    return av.Packet(data)


def test_access_units_begin_pictures_and_their_pieces_do_not() -> None:
    for codec, units in (("h264", h264_rgb(_frames(4), 30)), ("hevc", h265_rgb(_frames(4), 30))):
        for nals in units:
            access_unit = annex_b([nals])
            assert begins_picture(access_unit, codec), codec
            assert not begins_picture(access_unit[len(access_unit) // 2 :], codec)  # no start code first
        slice_only = b"\0\0\0\1" + units[1][-1]  # a trailing picture's one slice: begins it
        assert begins_picture(slice_only, codec)
    # A slice that is not its picture's first: H.264 first_mb_in_slice 5 (ue(v) 00110), H.265's flag 0.
    assert not begins_picture(b"\0\0\1" + bytes([0x41, 0b00110000, 0]), "h264")
    assert not begins_picture(b"\0\0\1" + bytes([1 << 1, 1, 0x00, 0]), "hevc")
    assert begins_picture(b"\0\0\1\x09\xf0", "h264")  # an access unit delimiter
    assert not begins_picture(b"", "h264") and not begins_picture(b"\0\0\1", "h264")


def test_mpeg2_and_mpeg4_pictures_begin_at_their_headers() -> None:
    # What an encoder puts first in a picture's PES packet: MPEG-2's sequence header, group of pictures or picture
    # header; MPEG-4 Part 2's visual object sequence, video object (layer), group of VOPs or VOP. A slice does not.
    for code in (0xB3, 0xB8, 0x00):
        assert begins_picture(b"\0\0\1" + bytes([code, 0x10]), "mpeg2video")
    assert not begins_picture(b"\0\0\1\x01\x10", "mpeg2video") and not begins_picture(b"\0\0\1\xb5", "mpeg2video")
    for code in (0xB0, 0x00, 0x20, 0xB3, 0xB6):
        assert begins_picture(b"\0\0\1" + bytes([code, 0x10]), "mpeg4")
    assert not begins_picture(b"\0\0\1\xb2\x10", "mpeg4") and not begins_picture(b"\x12\x34", "mpeg4")
    for codec in ("mpeg2video", "mpeg4"):
        assert not PesPictures(av.CodecContext.create(codec, "r"), mpegts=True).parsing


def test_whole_access_units_go_at_once_until_one_does_not_begin_a_picture() -> None:
    units = h264_rgb(_frames(6), 30)
    access_units = [annex_b([nals]) for nals in units]
    pes = PesPictures(av.CodecContext.create("h264", "r"), mpegts=True)
    for access_unit in access_units[:3]:
        (given,) = pes.push(_packet(access_unit))
        assert bytes(given) == access_unit
    assert not pes.parsing
    # A muxer that cuts a picture across two PES packets: from the second half on, the parser splits them.
    third = access_units[3]
    assert [bytes(p) for p in pes.push(_packet(third[: len(third) // 2]))] == [third[: len(third) // 2]]
    parsed = pes.push(_packet(third[len(third) // 2 :]))
    assert pes.parsing
    for access_unit in access_units[4:]:
        parsed += pes.push(_packet(access_unit))
    parsed += pes.push(_packet(b""))
    # The parser gives what it holds at the end, then the decoder's flush: every byte that came, in order.
    assert bytes(parsed[-1]) == b"" and b"".join(bytes(p) for p in parsed) == third[len(third) // 2 :] + b"".join(
        access_units[4:]
    )


def test_other_codecs_and_containers_are_split_by_their_parser() -> None:
    units = h264_rgb(_frames(4), 30)
    stream = annex_b(units)
    for context, mpegts in ((av.CodecContext.create("h264", "r"), False), (av.CodecContext.create("vc1", "r"), True)):
        pes = PesPictures(context, mpegts)
        assert pes.parsing
    pes = PesPictures(av.CodecContext.create("h264", "r"), mpegts=False)
    # Bytes cut anywhere (a raw H.264 stream over TCP): the parser gives whole access units, a picture held until
    # the next begins.
    got = [bytes(p) for at in range(0, len(stream), 1000) for p in pes.push(_packet(stream[at : at + 1000]))]
    got += [bytes(p) for p in pes.push(_packet(b""))]
    assert got[:-1] == [annex_b([nals]) for nals in units] and got[-1] == b""
