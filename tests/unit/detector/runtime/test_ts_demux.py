"""An MPEG-TS stream's video PES packets given as soon as each is complete (detector/runtime/ts_demux.py): the same
bytes as FFmpeg's demuxer gives, a TS packet sooner once stuffing is seen to end PES packets, FFmpeg's way for a
muxer that stuffs elsewhere."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable

import av
import numpy as np
import pytest

from detector.runtime.ts_demux import CONFIRM, TS_SIZE, PesPackets, stuffed

PID = 0x100


def _pes(payload: bytes, declared: bool = False) -> bytes:
    """A video PES packet (stream 0xE0) around `payload`: its length 0 (unbounded, as muxers write video's) unless
    `declared`; a PTS in its 5-byte header field."""
    header = b"\x80\x80\x05" + b"\x21\x00\x01\x00\x01"
    length = len(header) + len(payload) if declared else 0
    return b"\0\0\1\xe0" + length.to_bytes(2, "big") + header + payload


class Muxer:
    """TS packets on PID, as a muxer writes them: each PES packet from a packet's payload start, 184 bytes a packet,
    the last padded with adaptation-field stuffing; `stuff_inside`, a muxer that also sends a short packet (stuffed)
    inside a PES packet, after its first."""

    def __init__(self, pid: int = PID, stuff_inside: bool = False) -> None:
        self.pid, self.cc, self.stuff_inside = pid, 0, stuff_inside

    def packet(self, payload: bytes, start: bool, pcr: bool = False, pid: int | None = None) -> bytes:
        pid = self.pid if pid is None else pid
        head = bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF])
        room = TS_SIZE - 4
        field = b""
        if pcr or len(payload) < room:
            # The adaptation field: its length byte, the flags, a PCR, then stuffing up to the payload.
            body = b"\x10" + bytes(6) if pcr else b"\x00"
            stuffing = room - 1 - len(body) - len(payload)
            assert stuffing >= 0
            field = bytes([len(body) + stuffing]) + body + b"\xff" * stuffing
        control = (0x30 if field else 0x10) | self.cc
        self.cc = (self.cc + 1) % 16
        return head + bytes([control]) + field + payload

    def mux(self, pes: bytes, pcr: bool = False) -> list[bytes]:
        out: list[bytes] = []
        at = 0
        while at < len(pes):
            short = self.stuff_inside and len(out) == 1 and len(pes) - at > 100
            room = 100 if short else TS_SIZE - 4 - (8 if pcr and not out else 0)
            out.append(self.packet(pes[at : at + room], start=not out, pcr=pcr and not out))
            at += room
        return out


def _payloads(n: int, size: int = 1000) -> list[bytes]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, size + 37 * i, dtype=np.uint8).tobytes() for i in range(n)]


def _fed(demux: PesPackets, pieces: Iterable[bytes]) -> list[bytes]:
    """Every payload `demux` gives for these bytes, in order, then what its flush gives."""
    return [p for piece in pieces for p in demux.push(piece)] + demux.flush()


def _given_at(packets_per_pes: list[list[bytes]], demux: PesPackets) -> list[tuple[int, int]]:
    """(the PES packet given, the one being fed when it was) for each given."""
    given = []
    count = 0
    for i, packets in enumerate(packets_per_pes):
        for packet in packets:
            for _ in demux.push(packet):
                given.append((count, i))
                count += 1
    for _ in demux.flush():
        given.append((count, len(packets_per_pes)))
        count += 1
    return given


def test_the_payloads_are_ffmpegs_for_any_split_of_the_bytes() -> None:
    from benchmarks.cameras import ts_chunks

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (144, 176, 3), dtype=np.uint8)
    chunks = ts_chunks((np.roll(base, 3 * i, axis=1) for i in range(20)), 10)
    stream = b"".join(chunks)
    with av.open(io.BytesIO(stream), "r", options={"fflags": "+noparse"}) as container:
        video = container.streams.video[0]
        expected = [bytes(p) for p in container.demux(video) if p.size]
        pid = video.id
    assert len(expected) == 20
    for split in (len(stream), 7, 100, 1316, 4096):
        demux = PesPackets(pid)
        assert _fed(demux, (stream[at : at + split] for at in range(0, len(stream), split))) == expected, split
    # Each camera chunk (one frame's TS packets) completes its own frame once stuffing is trusted.
    demux = PesPackets(pid)
    per_chunk = [len(demux.push(chunk)) for chunk in chunks]
    assert demux.trusted and per_chunk[CONFIRM + 1 :] == [1] * (len(chunks) - CONFIRM - 1)


def test_stuffing_ends_a_pes_packet_once_seen_to_and_the_next_start_before() -> None:
    payloads = _payloads(8)
    muxer = Muxer()
    per_pes = [muxer.mux(_pes(p), pcr=i % 3 == 0) for i, p in enumerate(payloads)]
    demux = PesPackets(PID)
    given = _given_at(per_pes, demux)
    # The first CONFIRM at the next start (each start confirms the stuffing before it), the rest at their own last
    # packet.
    assert given == [(i, i + 1) for i in range(CONFIRM)] + [(i, i) for i in range(CONFIRM, 8)]
    assert demux.trusted and demux.broken == 0
    demux = PesPackets(PID)
    assert _fed(demux, itertools.chain.from_iterable(per_pes)) == payloads


def test_a_muxer_that_stuffs_inside_a_pes_packet_is_never_trusted() -> None:
    payloads = _payloads(8)
    muxer = Muxer(stuff_inside=True)
    per_pes = [muxer.mux(_pes(p)) for p in payloads]
    demux = PesPackets(PID)
    given = _given_at(per_pes, demux)
    assert given == [(i, i + 1) for i in range(8)] and not demux.trusted
    demux = PesPackets(PID)
    assert _fed(demux, itertools.chain.from_iterable(per_pes)) == payloads


def test_stuffing_inside_after_trust_breaks_that_frame_and_ends_trust() -> None:
    payloads = _payloads(10)
    muxer = Muxer()
    per_pes = [muxer.mux(_pes(p)) for p in payloads[:6]]
    muxer.stuff_inside = True
    per_pes.append(muxer.mux(_pes(payloads[6])))  # given at its short second packet: its rest comes after
    muxer.stuff_inside = False
    per_pes += [muxer.mux(_pes(p)) for p in payloads[7:]]
    demux = PesPackets(PID)
    out = _fed(demux, itertools.chain.from_iterable(per_pes))
    assert demux.broken == 1 and not demux.trusted
    # The broken one is its first two packets' bytes; those after it come whole, at the next start.
    assert out[:6] == payloads[:6] and payloads[6].startswith(out[6]) and len(out[6]) < len(payloads[6])
    assert out[7:] == payloads[7:]
    assert _given_at([muxer.mux(_pes(p)) for p in payloads[:3]], demux) == [(0, 1), (1, 2), (2, 3)]


def test_a_declared_length_completes_a_pes_packet_without_trust() -> None:
    payloads = _payloads(3, size=500)
    muxer = Muxer(stuff_inside=True)  # never trusted: only the length can say
    per_pes = [muxer.mux(_pes(p, declared=True)) for p in payloads]
    demux = PesPackets(PID)
    assert _given_at(per_pes, demux) == [(0, 0), (1, 1), (2, 2)] and not demux.trusted


def test_other_pids_duplicates_errors_and_lost_sync() -> None:
    payloads = _payloads(6)
    muxer, other = Muxer(), Muxer(pid=0x101)
    stream = []
    for p in payloads:
        packets = muxer.mux(_pes(p))
        stream += [packets[0], packets[0]]  # a duplicate (the same continuity counter): read once
        stream += other.mux(_pes(b"audio" * 50))  # another PID: not this one's
        stream.append(b"\x47\x81\x00\x10" + bytes(184))  # the transport error flag: skipped
        stream += packets[1:]
        stream.append(b"garbage")  # a datagram cut short: the packets after it found again
    demux = PesPackets(PID)
    assert _fed(demux, stream) == payloads


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"", False),  # no adaptation field
        (b"\x00", True),  # a field of its length byte only: one byte of stuffing
        (b"\x07\x10" + bytes(6), False),  # a PCR, no stuffing
        (b"\x09\x10" + bytes(6) + b"\xff\xff", True),  # a PCR, then stuffing
        (b"\x01\x00", False),  # the flags byte only
        (b"\x04\x02\x02ab", False),  # private data filling the field
        (b"\x05\x02\x02ab\xff", True),  # private data, then stuffing
    ],
)
def test_stuffed(field: bytes, expected: bool) -> None:
    control = 0x30 if field else 0x10
    packet = bytes([0x47, 0x01, 0x00, control]) + field
    assert stuffed(packet + bytes(TS_SIZE - len(packet))) is expected


def test_chunks_split_anywhere_give_the_same() -> None:
    payloads = _payloads(5)
    muxer = Muxer()
    stream = b"".join(itertools.chain.from_iterable(muxer.mux(_pes(p)) for p in payloads))
    demux = PesPackets(PID)
    cuts = [0, 1, 2, 187, 188, 189, 500, 2000, len(stream)]
    assert _fed(demux, (stream[a:b] for a, b in itertools.pairwise(cuts))) == payloads


def test_a_pes_packet_past_the_bound_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    import detector.runtime.ts_demux as ts_demux

    monkeypatch.setattr(ts_demux, "MAX_PES", 2000)
    payloads = [b"a" * 1000, b"b" * 5000, b"c" * 1000]
    muxer = Muxer()
    demux = PesPackets(PID)
    stream = [packet for p in payloads for packet in muxer.mux(_pes(p))]
    assert _fed(demux, stream) == [payloads[0], payloads[2]]


def test_lost_packets_after_a_stuffed_one_do_not_end_trust() -> None:
    # UDP: the datagram with the next PES packet's start is lost. The one before ended at its stuffing (given, at
    # once if trusted); the lost one's rest is dropped; trust stays, so the ones after still come at their end.
    payloads = _payloads(10)
    muxer = Muxer()
    per_pes = [muxer.mux(_pes(p)) for p in payloads]
    for lost_at in (1, 6):  # while learning (the one before held until then), and once trusted
        kept = [pes[2:] if i == lost_at else pes for i, pes in enumerate(per_pes)]
        demux = PesPackets(PID)
        out = _fed(demux, itertools.chain.from_iterable(kept))
        assert out == payloads[:lost_at] + payloads[lost_at + 1 :] and demux.trusted and demux.broken == 0
        given = _given_at(kept, demux := PesPackets(PID))
        assert given[-1] == (8, 9), given  # the last given at its own last packet
