"""MPEG-TS over TCP or UDP without FFmpeg's parser: each frame decoded one frame interval sooner.

Read through FFmpeg's parser, an MPEG-TS camera's frame waited two frame intervals (68.0 ms p50 for a 30 fps 720p
x264 stream on loopback): one in the demuxer (a TS video packet has no length, so a PES packet is known complete only
when the next one starts) and one more in the parser (which waits, the same way, for the next access unit to begin).
Opened with `fflags=+noparse`, the demuxer's PES packets come as they are, and a camera's muxer puts one frame in
each, so `PesPictures` gives each to the decoder at once (34.7 ms on the same stream) as long as it begins a picture
(its first NAL unit starts an access unit: an access unit delimiter, a parameter set, an SEI, or a picture's first
slice). A PES packet that does not (a muxer that cuts frames across packets), an H.264 or H.265 stream in another
container, and any other codec are split by the codec's own parser here (`CodecContext.parse`), as FFmpeg would have.
The demuxer's wait stays: it is the container's.
"""

from __future__ import annotations

from typing import Any

# H.264 NAL unit types that begin an access unit (ITU-T H.264 7.4.1.2.3): SEI, SPS, PPS, AUD, 14-18; a slice (1, 5)
# does when it is its picture's first (first_mb_in_slice 0).
_H264_AU_START = {6, 7, 8, 9, 14, 15, 16, 17, 18}
# H.265's (7.4.2.4.4): VPS, SPS, PPS, AUD, prefix SEI, 41-44, 48-55; a slice (0-31) when it is its picture's first.
_HEVC_AU_START = {32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)}


def begins_picture(data: bytes, codec: str) -> bool:
    """Whether `data` (a PES packet's payload) starts with a start code and a NAL unit that begins an access unit."""
    at = 4 if data.startswith(b"\0\0\0\1") else 3 if data.startswith(b"\0\0\1") else -1
    if at < 0 or len(data) < at + 3:
        return False
    if codec == "h264":
        kind = data[at] & 0x1F
        return kind in _H264_AU_START or (kind in (1, 5) and bool(data[at + 1] & 0x80))  # ue(v) 0 is a lone 1 bit
    kind = (data[at] >> 1) & 0x3F
    return kind in _HEVC_AU_START or (kind < 32 and bool(data[at + 2] & 0x80))  # first_slice_segment_in_pic_flag


class PesPictures:
    """`push` each packet of a stream opened with `fflags=+noparse` (`context`: its decoder, `mpegts`: whether the
    container is MPEG-TS); it returns the packets to decode. `parsing`: whether the codec's parser splits them
    (always for codecs other than H.264 and H.265, or another container; from the first PES packet that does not
    begin a picture on)."""

    def __init__(self, context: Any, mpegts: bool) -> None:
        self._context = context
        self._codec = str(context.name)
        self.parsing = not mpegts or self._codec not in ("h264", "hevc")

    def push(self, packet: Any) -> list[Any]:
        data = bytes(packet)
        if not data:  # the stream's end: what the parser holds, then the decoder's own flush
            return [*(self._context.parse(None) if self.parsing else []), packet]
        if not self.parsing:
            if begins_picture(data, self._codec):
                return [packet]
            self.parsing = True  # (this packet goes on a picture already given: that one frame may be damaged)
        return list(self._context.parse(data))
