"""MPEG-TS over TCP or UDP without FFmpeg's parser: each frame decoded one frame interval sooner.

Read through FFmpeg's parser, an MPEG-TS camera's frame waited two frame intervals (68.0 ms p50 for a 30 fps 720p
x264 stream on loopback): one in the demuxer (a TS video packet has no length, so a PES packet is known complete only
when the next one starts) and one more in the parser (which waits, the same way, for the next access unit to begin).
Opened with `fflags=+noparse`, PES packets come as they are, and a camera's muxer puts one frame in each, so
`PesPictures` gives each to the decoder at once (34.7 ms on the same stream) as long as it begins a picture (its
first NAL unit starts an access unit: an access unit delimiter, a parameter set, an SEI, or a picture's first slice).
A PES packet that does not (a muxer that cuts frames across packets), an H.264 or H.265 stream in another container,
and any other codec are split by the codec's own parser here (`CodecContext.parse`), as FFmpeg would have. The
demuxer's wait is taken away for H.264 and H.265 by ts_demux.py, which gives their PES packets (1.3 ms at 8 fps).
"""

from __future__ import annotations

from typing import Any

from detector.runtime.access_units import begins_access_unit


def begins_picture(data: bytes, codec: str) -> bool:
    """Whether `data` (a PES packet's payload) starts with a start code and a NAL unit that begins an access unit."""
    at = 4 if data.startswith(b"\0\0\0\1") else 3 if data.startswith(b"\0\0\1") else -1
    return at > 0 and begins_access_unit(data[at : at + 3], codec)


class PesPictures:
    """`push` each packet of a stream opened with `fflags=+noparse` (`context`: its decoder, `mpegts`: whether the
    container is MPEG-TS); it returns the packets to decode. `parsing`: whether the codec's parser splits them
    (always for codecs other than H.264 and H.265, or another container, an RTSP camera's MPEG-4 among them; from
    the first PES packet that does not begin a picture on)."""

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
