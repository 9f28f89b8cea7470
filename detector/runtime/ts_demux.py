"""An MPEG-TS stream's video PES packets, each as soon as its last TS packet is in, not when the next one begins.

FFmpeg's MPEG-TS demuxer knows a video PES packet is complete only when the next one starts on its PID (muxers leave
a video PES packet's length at 0, "unbounded": FFmpeg's own does by default), so every frame of an MPEG-TS camera
waited one frame interval in the demuxer (ts_video.py took the parser's interval away; this takes the demuxer's).
But a PES packet must begin at the start of a TS packet's payload (ISO/IEC 13818-1 2.4.3.3), so a muxer pads the TS
packet that carries a PES packet's last bytes with adaptation-field stuffing (FFmpeg's, GStreamer's mpegtsmux and
camera muxers do) unless those bytes fill it exactly: a stuffed TS packet ends its PES packet. Written here, not
taken from a library: no maintained Python MPEG-TS reader gives packets before the next begins either, and only one
PID's packets are read (FFmpeg's demuxer still opens the stream and says which PID and codec); 255 MB/s here, 0.74 us
a TS packet (measured on a 2-core Xeon VM), so a 20 Mbit/s camera costs under 1 % of a core.

`PesPackets` relies on stuffing only after `CONFIRM` PES packets were seen to end so (the next TS packet on the PID
began a PES packet); a muxer that stuffs inside a PES packet, caught while learning or by a TS packet that comes after
its PES packet was given as complete (that frame may then decode damaged), is read FFmpeg's way from then on: never
worse than before, a frame later; TS packets lost before (a gap in the continuity counter, UDP) prove nothing. A PES
packet whose header gives its length is complete when that much is in.
"""

from __future__ import annotations

TS_SIZE = 188  # an MPEG-TS packet's size (the 192- and 204-byte variants are not what live cameras send)
SYNC = 0x47
CONFIRM = 3  # PES packets seen to end at a stuffed TS packet before stuffing is relied on
MAX_PES = 8 << 20  # bytes: a PES packet longer than this is dropped (a frame of 4K H.264 is well under 2 MiB)


def stuffed(packet: bytes | memoryview) -> bool:
    """Whether a TS packet's adaptation field ends in stuffing bytes (what pads a PES packet's last TS packet)."""
    if not packet[3] & 0x20:  # no adaptation field
        return False
    length = packet[4]
    if length == 0:  # a single byte of stuffing: the field's length and nothing else
        return True
    flags = packet[5]
    used = 1 + 6 * bool(flags & 0x10) + 6 * bool(flags & 0x08) + bool(flags & 0x04)  # flags, PCR, OPCR, splice
    if flags & 0x02 and used < length:  # transport private data: its length, then the data
        used += 1 + packet[5 + used]
    if flags & 0x01 and used < length:  # the adaptation field extension: its length, then the extension
        used += 1 + packet[5 + used]
    return used < length


class PesPackets:
    """`push` the bytes of an MPEG-TS stream as they come (any split); it returns the payloads (the PES header taken
    off) of `pid`'s PES packets completed by them. `flush` at the stream's end gives the one still open. `trusted`:
    whether stuffing ends a PES packet (False: the next PES packet's start does, as FFmpeg's demuxer waits for);
    `broken`: PES packets given as complete that were not (TS packets came after)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._rest = b""  # bytes after the last whole TS packet
        self._pes: bytearray | None = None  # the PES packet being joined (its header included)
        self._after_stuffing = False  # the PES packet's last TS packet so far was stuffed
        self._given_early = False  # the last PES packet was given at its stuffed TS packet
        self._confirmed = 0
        self._never = False  # the muxer stuffs inside PES packets: stuffing ends nothing
        self._last_cc = -1
        self.broken = 0

    @property
    def trusted(self) -> bool:
        return not self._never and self._confirmed >= CONFIRM

    def push(self, data: bytes) -> list[bytes]:
        buffer = self._rest + data if self._rest else data
        view = memoryview(buffer)
        out: list[bytes] = []
        at, end = 0, len(buffer)
        while end - at >= TS_SIZE:
            if buffer[at] != SYNC:  # lost sync (a UDP datagram cut short): the next place two packets line up
                at = _resync(buffer, at + 1)
                continue
            if ((buffer[at + 1] & 0x1F) << 8 | buffer[at + 2]) == self.pid:
                self._packet(view[at : at + TS_SIZE], out)
            at += TS_SIZE
        self._rest = buffer[at:]
        return out

    def flush(self) -> list[bytes]:
        """The PES packet still open (the stream ended), if any."""
        out: list[bytes] = []
        self._give(out)
        return out

    def _packet(self, packet: memoryview, out: list[bytes]) -> None:
        b1, b3 = packet[1], packet[3]
        if b1 & 0x80 or not b3 & 0x10:  # the transport error flag; or no payload (an adaptation field only)
            return
        cc = b3 & 0x0F
        if cc == self._last_cc:  # a duplicate packet (allowed once by the standard): its payload was had
            return
        # Packets lost before this one (UDP): what follows a stuffed packet then says nothing about the muxer.
        lost = self._last_cc >= 0 and cc != (self._last_cc + 1) % 16
        self._last_cc = cc
        at = 4 + (1 + packet[4] if b3 & 0x20 else 0)
        if at >= TS_SIZE:
            return
        if b1 & 0x40:  # a PES packet starts here: the one before is complete
            if self._after_stuffing:  # the stuffed TS packet before was its PES packet's last
                self._confirmed += 1
            self._give(out)
            self._pes = bytearray()
            self._given_early = False
        elif self._pes is None:  # no PES packet open: bytes before the first start, or after one given early
            if self._given_early and not lost:  # it was not complete: the frame it was may decode damaged
                self.broken += 1
                self._never = True
            self._given_early = False
            return
        elif self._after_stuffing:
            if lost:  # the next PES packet's start was lost: the one open ended at its stuffing; the rest dropped
                self._give(out)
                return
            self._never = True  # a stuffed TS packet was not the end: this muxer stuffs inside PES packets
        self._pes.extend(packet[at:])
        self._after_stuffing = stuffed(packet)
        if len(self._pes) > MAX_PES:
            self._pes = None
        elif _declared_complete(self._pes):
            self._give(out)
        elif self._after_stuffing and self.trusted:
            self._give(out)
            self._given_early = True

    def _give(self, out: list[bytes]) -> None:
        pes, self._pes = self._pes, None
        self._after_stuffing = False
        if pes is not None and len(pes) >= 9 and pes[:3] == b"\0\0\1":
            out.append(bytes(pes[9 + pes[8] : _length(pes)]))


def _length(pes: bytearray) -> int:
    """Where a PES packet ends: its declared length (a video one's is often 0, unbounded), else all that came."""
    declared = pes[4] << 8 | pes[5]
    return 6 + declared if declared else len(pes)


def _declared_complete(pes: bytearray) -> bool:
    return len(pes) >= 6 and (pes[4] or pes[5]) != 0 and len(pes) >= _length(pes)


def begins_ts(data: bytes) -> bool:
    """Whether `data` starts as an MPEG-TS stream does: a TS packet's sync byte, and another one packet on (when
    that far is in)."""
    return _lines_up(data, 0)


def _lines_up(buffer: bytes, at: int) -> bool:
    return buffer[at : at + 1] == b"\x47" and (at + TS_SIZE >= len(buffer) or buffer[at + TS_SIZE] == SYNC)


def _resync(buffer: bytes, at: int) -> int:
    """The next offset from `at` where a sync byte has another one TS_SIZE after it (or is the last one in)."""
    while True:
        at = buffer.find(b"\x47", at)
        if at < 0:
            return len(buffer)
        if _lines_up(buffer, at):
            return at
        at += 1
