"""An RTSP camera's H.264 decoded as soon as each frame is in, not one frame later.

FFmpeg's RTSP reader hands H.264 to its parser, which knows a frame is complete only when the next one begins (RTP's
marker bit, which says so at once, is not passed on), so every frame waited one frame interval before it was decoded:
33 ms at 30 fps, 67 ms at 15 (measured on loopback: p50 34.5 ms from a 720p frame's sending to its decode). Opened
with `fflags=+noparse` instead, the reader gives each RTP packet's payload as it came: a whole NAL unit (or a STAP-A's
several) after a start code, or a piece of one (an FU-A fragment: the first with a start code and the NAL header, the
others bare). `NalUnits` joins the pieces into whole NAL units, and the decoder, told that its input may stop inside
a frame (`flags2=+chunks`), gives a frame out once its last slice is decoded: p50 1.2 ms on the same camera.

A NAL unit is known whole at once when the next packet starts with a start code (what FFmpeg's parser waits for) or
by the packets' sizes: packetizers cut fragments at a fixed payload size P (the MTU's), so a first fragment is
always P + 5 bytes here (start code, header), a middle one P, and only the last one shorter. The sizes are trusted
after `CONFIRM` fragmented units showed exactly that; a packetizer that cuts otherwise (fragments of equal shares),
caught while learning or by a fragment that comes after its unit was taken as whole (that frame may then decode
damaged), is read the parser's way from then on: never worse than before, only a frame later.
"""

from __future__ import annotations

from typing import Any

START_CODE = b"\0\0\0\1"  # what FFmpeg's RTP H.264 depacketizer (libavformat/rtpdec_h264.c) puts before a NAL unit
FU_START_EXTRA = len(START_CODE) + 1  # a first fragment: the start code and the NAL header it rebuilds
CONFIRM = 3  # fragmented NAL units of the expected sizes before their sizes are trusted


class NalUnits:
    """`push` each packet of an RTSP H.264 stream opened with `fflags=+noparse`; it returns the packets to decode
    (whole NAL units, at once where the sizes tell). `trusted`: whether sizes are used (False: a start code
    ends a unit, as FFmpeg's parser does)."""

    def __init__(self) -> None:
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
            if self.trusted and self._payload is not None and len(data) != self._payload + FU_START_EXTRA:
                self._sized_whole = True
                return [*out, packet]  # a whole NAL unit (or a STAP-A's several): not a first fragment's size
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
            self._payload = self._fragments[0] - FU_START_EXTRA  # a first fragment is always full
        if self.trusted and self._payload is not None and len(data) < self._payload:
            self._sized_whole = True
            return self._flush()  # the last fragment: shorter than the others
        return []

    def _flush(self) -> list[Any]:
        """The unit being joined, as a packet with its first packet's timestamps (none if nothing is pending)."""
        import av

        if self._pending is None:
            return []
        if len(self._fragments) > 1:
            self._learn()
            unit = av.Packet(bytes(self._pending))
            first = self._pending_from
            unit.pts, unit.dts = first.pts, first.dts
            if first.time_base is not None:
                unit.time_base = first.time_base
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
        if first != payload + FU_START_EXTRA or any(n != payload for n in middle) or last > payload:
            self._stop_trusting()
        elif not self.trusted:
            self._confirmed += 1
            self.trusted = self._confirmed >= CONFIRM

    def _stop_trusting(self) -> None:
        self.trusted, self.gave_up = False, True
