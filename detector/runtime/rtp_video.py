"""An RTSP camera's H.264 or H.265 decoded as soon as each frame is in, not one frame later.

FFmpeg's RTSP reader hands H.264 and H.265 to its parser, which knows a frame is complete only when the next one
begins (RTP's marker bit, which says so at once, is not passed on), so every frame waited one frame interval before
it was decoded: 33 ms at 30 fps, 67 ms at 15 (measured on loopback: p50 34.5 ms from a 720p frame's sending to its
decode). Opened with `fflags=+noparse` instead, the reader gives each RTP packet's payload as it came: a whole NAL
unit (or an aggregation packet's several) after a start code, or a piece of one (a fragmentation unit: the first
piece with a start code and the NAL header rebuilt, the others bare). `NalUnits` joins the pieces into whole NAL
units. H.264's decoder, told that its input may stop inside a frame (`flags2=+chunks`), gives a frame out once its
last slice is decoded: p50 1.2 ms on the same camera. H.265's decoder has no such mode: it takes a packet as a whole
picture, so `SingleSlicePictures` gives it each NAL unit at once only for a camera whose pictures are one slice each
(what cameras send), seen so on the first `CONFIRM` pictures; otherwise it joins whole pictures, the parser's way.

A NAL unit is known whole at once when the next packet starts with a start code (what FFmpeg's parser waits for) or
by the packets' sizes: packetizers cut fragments at a fixed payload size P (the MTU's), so a first fragment is
always P + 4 + the NAL header's size here, a middle one P, and only the last one shorter. The sizes are trusted after
`CONFIRM` fragmented units showed exactly that; a packetizer that cuts otherwise (fragments of equal shares), caught
while learning or by a fragment that comes after its unit was taken as whole (that frame may then decode damaged),
is read the parser's way from then on: never worse than before, only a frame later.
"""

from __future__ import annotations

from typing import Any, Protocol

from detector.runtime.access_units import begins_access_unit, first_slice, hevc_slice

START_CODE = b"\0\0\0\1"  # what FFmpeg's RTP depacketizers (libavformat/rtpdec_h264.c, rtpdec_hevc.c) put first
CONFIRM = 3  # fragmented NAL units of the expected sizes (or one-slice pictures) before they are relied on


class Units(Protocol):
    """A stream's packets in, the packets to decode out (an empty packet, the stream's end, comes out last)."""

    def push(self, packet: Any) -> list[Any]: ...


# Codecs whose RTP packets FFmpeg's depacketizers join into whole pictures themselves, asking for no parser
# (libavformat/rtpdec_jpeg.c, rtpdec_vpx.c): read as they come. (Every other video depacketizer asks for one.)
WHOLE_PICTURES = ("mjpeg", "vp8")


def parserless(codec: str) -> Units | None:
    """What joins the packets of an RTSP stream opened with `fflags=+noparse` for the decoder, by the codec's name
    (FFmpeg's); None for a codec this module does not join (`WHOLE_PICTURES` as they come, any other through its
    parser: live.py). H.264 also needs its decoder on `flags2=+chunks`."""
    if codec == "h264":
        return NalUnits(header_size=1)
    if codec == "hevc":
        return _Chain(NalUnits(header_size=2), SingleSlicePictures())
    return None


class NalUnits:
    """`push` each packet of an RTSP H.264 (`header_size` 1) or H.265 (2) stream opened with `fflags=+noparse`; it
    returns the packets to decode: whole NAL units, at once where the sizes tell. `trusted`: whether sizes are used
    (False: a start code ends a unit, as FFmpeg's parser does)."""

    def __init__(self, header_size: int = 1) -> None:
        self._first_extra = len(START_CODE) + header_size  # a first fragment: the start code, the header rebuilt
        self._pending: bytearray | None = None  # the NAL unit being joined
        self._pending_from: Any = None  # the packet it began with (its timestamps)
        self._fragments: list[int] = []  # the sizes of its packets, the first included
        self._payload: int | None = None  # P, the fragments' size, once learned
        self._confirmed = 0
        self._sized_whole = False  # the last unit was taken as whole by its size
        self.trusted = False
        self.gave_up = False  # the sizes misled once (or never fitted): not used again

    def push(self, packet: Any) -> list[Any]:
        """The packets to decode now, in order: the NAL units this packet completes. An empty packet (the
        stream's end) flushes what is left, itself last (the decoder's own flush)."""
        data = bytes(packet)
        if not data:
            return [*self._flush(), packet]
        if data.startswith(START_CODE):
            out = self._flush()
            if self.trusted and self._payload is not None and len(data) != self._payload + self._first_extra:
                self._sized_whole = True
                return [*out, packet]  # a whole NAL unit (or an aggregation's several): not a first fragment's size
            self._sized_whole = False
            self._pending, self._pending_from, self._fragments = bytearray(data), packet, [len(data)]
            return out
        if self._pending is None:  # a fragment whose unit was given out already (or never began: lost)
            if self._sized_whole:
                self._stop_trusting()
            return []
        self._pending += data
        self._fragments.append(len(data))
        if self._payload is None and len(self._fragments) == 2:
            self._payload = self._fragments[0] - self._first_extra  # a first fragment is always full
        if self.trusted and self._payload is not None and len(data) < self._payload:
            self._sized_whole = True
            return self._flush()  # the last fragment: shorter than the others
        return []

    def _flush(self) -> list[Any]:
        """The unit being joined, as a packet with its first packet's timestamps (none if nothing is pending)."""
        if self._pending is None:
            return []
        if len(self._fragments) > 1:
            self._learn()
            unit = _packet(bytes(self._pending), self._pending_from)
        else:
            unit = self._pending_from  # one packet, whole: given as it came
        self._pending = self._pending_from = None
        return [unit]

    def _learn(self) -> None:
        """A fragmented unit just ended at a start code or by its size: do its sizes fit P?"""
        if self.gave_up or self._payload is None:
            return
        first, *middle, last = self._fragments
        payload = self._payload
        if first != payload + self._first_extra or any(n != payload for n in middle) or last > payload:
            self._stop_trusting()
        elif not self.trusted:
            self._confirmed += 1
            self.trusted = self._confirmed >= CONFIRM

    def _stop_trusting(self) -> None:
        self.trusted, self.gave_up = False, True


class SingleSlicePictures:
    """`push` the whole NAL units of an H.265 stream (`NalUnits`'s packets, each one unit or an aggregation's
    several); it returns what to decode. While learning, and for good where a picture has more than one slice, whole
    pictures (their units joined, given out when the next picture begins: the parser's way). Once `CONFIRM` pictures
    came as one slice each, every unit at once: a picture's one slice is the whole picture. `at_once`: which of the
    two; `gave_up`: a picture of several slices was seen (if after `at_once`, that picture's first slice was given
    out alone, unless it was still held, and the rest dropped)."""

    def __init__(self) -> None:
        self._picture: list[Any] = []  # the current access unit's packets
        self._slices = 0  # its slices (VCL units)
        self._confirmed = 0
        self._skipping = False  # after a surprise slice: until the next picture begins
        self.at_once = False
        self.gave_up = False

    def push(self, packet: Any) -> list[Any]:
        data = bytes(packet)
        if not data:
            return [*self._give(), packet]
        units = [unit for unit in data.split(START_CODE) if unit]
        slices = [unit for unit in units if hevc_slice(unit)]
        first_slices = [first_slice(unit, "hevc") for unit in slices]
        begins = bool(units) and begins_access_unit(units[0], "hevc")  # a new picture
        if self.at_once:
            if not all(first_slices):  # a picture's second slice
                self.at_once, self.gave_up = False, True
                if self._picture:  # its first slice is still held (the lesson ended with it): joined whole
                    self._picture.append(packet)
                    self._slices += len(slices)
                else:  # the first was given out as the whole picture: the rest of it is dropped
                    self._skipping = True
                return []
            held, self._picture, self._slices = self._picture, [], 0  # what came while the last lesson was learned
            return [*held, packet]
        if self._skipping and not begins:
            return []
        self._skipping = False
        out = self._give() if begins and self._slices else []
        self._picture.append(packet)
        self._slices += len(slices)
        return out

    def _give(self) -> list[Any]:
        """The current picture, joined into one packet (none if nothing is pending); learns from its slices."""
        if not self._picture:
            return []
        if self._slices > 1:
            self.gave_up = True
        elif self._slices == 1 and not self.gave_up:
            self._confirmed += 1
            self.at_once = self._confirmed >= CONFIRM
        first = self._picture[0]
        joined = first if len(self._picture) == 1 else _packet(b"".join(bytes(p) for p in self._picture), first)
        self._picture, self._slices = [], 0
        return [joined]


class _Chain:
    """Two stages, the first's packets through the second."""

    def __init__(self, first: Units, second: Units) -> None:
        self._first, self._second = first, second

    def push(self, packet: Any) -> list[Any]:
        return [out for unit in self._first.push(packet) for out in self._second.push(unit)]


def _packet(data: bytes, like: Any) -> Any:
    """A packet of `data` with `like`'s timestamps."""
    import av

    packet = av.Packet(data)
    packet.pts, packet.dts = like.pts, like.dts
    if like.time_base is not None:
        packet.time_base = like.time_base
    return packet
