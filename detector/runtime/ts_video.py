"""MPEG-TS over TCP or UDP without FFmpeg's parser: each frame decoded one frame interval sooner.

Read through FFmpeg's parser, an MPEG-TS camera's frame waited two frame intervals (68.0 ms p50 for a 30 fps 720p
x264 stream on loopback): one in the demuxer (a TS video packet has no length, so a PES packet is known complete only
when the next one starts) and one more in the parser (which waits, the same way, for the next access unit to begin).
Opened with `fflags=+noparse`, PES packets come as they are, and a camera's muxer puts one frame in each, so
`PesPictures` gives each to the decoder at once (34.7 ms on the same stream) as long as it begins a picture (its
first NAL unit starts an access unit: an access unit delimiter, a parameter set, an SEI, or a picture's first slice;
for MPEG-2 video and MPEG-4 Part 2, a header that comes before a picture's data). A PES packet that does not (a muxer
that cuts frames across packets), any of these codecs in another container, and any other codec are split by the
codec's own parser here (`CodecContext.parse`), as FFmpeg would have. The demuxer's wait is taken away for these
codecs by ts_demux.py, which gives their PES packets (H.264 1.3 ms at 8 fps; MPEG-4 Part 2 251.6 -> 1.8 ms, MPEG-2
502 -> 252 ms: half of it the test camera's encoder, which gives each picture out one frame late, half the decoder,
which holds each picture until the next for a sequence that does not say it has no B-frames).
"""

from __future__ import annotations

from typing import Any

from detector.runtime.access_units import begins_access_unit

# MPEG-1/2 video and MPEG-4 Part 2 start codes that come before a picture's data (ISO/IEC 13818-2 6.2.1, 14496-2
# 6.2.1): MPEG-2's picture (0x00), sequence header (0xB3) and group of pictures (0xB8); MPEG-4's visual object
# sequence (0xB0), group of VOPs (0xB3), VOP (0xB6), video object (0x00-0x1F) and video object layer (0x20-0x2F).
_MPEG_PICTURE_START = {
    "mpeg1video": {0x00, 0xB3, 0xB8},
    "mpeg2video": {0x00, 0xB3, 0xB8},
    "mpeg4": {0xB0, 0xB3, 0xB6, *range(0x30)},
}
PES_PICTURES = ("h264", "hevc", *_MPEG_PICTURE_START)  # the codecs whose PES packets go whole to the decoder


def begins_picture(data: bytes, codec: str) -> bool:
    """Whether `data` (a PES packet's payload) starts with a start code and a NAL unit that begins an access unit
    (H.264, H.265), or a start code that comes before a picture's data (MPEG-1/2 video, MPEG-4 Part 2)."""
    at = 4 if data.startswith(b"\0\0\0\1") else 3 if data.startswith(b"\0\0\1") else -1
    if at < 0 or len(data) <= at:
        return False
    if codec in _MPEG_PICTURE_START:
        return data[at] in _MPEG_PICTURE_START[codec]
    return begins_access_unit(data[at : at + 3], codec)


class PesPictures:
    """`push` each packet of a stream opened with `fflags=+noparse` (`context`: its decoder, `mpegts`: whether the
    container is MPEG-TS); it returns the packets to decode. `parsing`: whether the codec's parser splits them
    (always for a codec not in `PES_PICTURES` or another container, an RTSP camera's MPEG-4 among them; from the
    first PES packet that does not begin a picture on)."""

    def __init__(self, context: Any, mpegts: bool) -> None:
        self._context = context
        self._codec = str(context.name)
        self.parsing = not mpegts or self._codec not in PES_PICTURES

    def push(self, packet: Any) -> list[Any]:
        data = bytes(packet)
        if not data:  # the stream's end: what the parser holds, then the decoder's own flush
            return [*(self._context.parse(None) if self.parsing else []), packet]
        if not self.parsing:
            if begins_picture(data, self._codec):
                return [packet]
            self.parsing = True  # (this packet goes on a picture already given: that one frame may be damaged)
        return list(self._context.parse(data))
