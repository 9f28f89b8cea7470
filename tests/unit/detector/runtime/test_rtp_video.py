"""`NalUnits`: an RTSP camera's H.264 packets, as FFmpeg's RTP reader gives them without its parser, joined into whole
NAL units; at once by the fragments' sizes once those proved regular, else when the next unit begins; packetizers that
cut otherwise, and fragments whose start was lost, never give a unit out early twice. `SingleSlicePictures`: H.265's
units given at once only for pictures of one slice, else joined into whole pictures."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import av
import numpy as np
import pytest

from detector.runtime.rtp_video import CONFIRM, START_CODE, NalUnits, SingleSlicePictures, parserless

P = 100  # the fragments' payload size in these tests (a camera's: its MTU's)


def _nal(size: int, seed: int) -> bytes:
    """A NAL unit of `size` bytes (a non-IDR slice's header byte, then bytes without a start code in them)."""
    return bytes([0x41]) + np.random.default_rng(seed).integers(1, 255, size - 1, dtype=np.uint8).tobytes()


def _fu_a(nal: bytes, cuts: Iterable[int]) -> Iterator[bytes]:
    """What FFmpeg's RTP H.264 reader (libavformat/rtpdec_h264.c) gives for `nal` sent in FU-A fragments cut at
    `cuts` (sizes of the NAL's body, its header byte aside): the first with a start code and the header rebuilt,
    the others bare."""
    body, at = nal[1:], 0
    for n, size in enumerate(cuts):
        piece = body[at : at + size]
        at += size
        yield START_CODE + nal[:1] + piece if n == 0 else piece
    assert at == len(body)


def _mtu_cuts(nal: bytes) -> list[int]:
    body = len(nal) - 1
    return [P] * (body // P) + ([body % P] if body % P else [])


def _packet(data: bytes) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = packet.dts = 0
    return packet


def _feed(units: NalUnits, packets: Iterable[bytes]) -> list[tuple[int, bytes]]:
    """(after which packet, bytes) for every packet `units` gave out."""
    out = []
    for n, data in enumerate(packets):
        out += [(n, bytes(p)) for p in units.push(_packet(data))]
    return out


def _stream(nals: list[bytes], cuts: dict[int, list[int]] | None = None) -> tuple[list[bytes], list[int]]:
    """FFmpeg's packets for these NAL units (FU-A at MTU `P` where one is larger, or at `cuts[i]`), and the index of
    each unit's last packet."""
    packets, last = [], []
    for i, nal in enumerate(nals):
        if cuts and i in cuts:
            packets += _fu_a(nal, cuts[i])
        elif len(nal) > P + 1:
            packets += _fu_a(nal, _mtu_cuts(nal))
        else:
            packets.append(START_CODE + nal)
        last.append(len(packets) - 1)
    return packets, last


def test_units_are_whole_and_given_out_at_their_last_packet_once_the_sizes_proved_regular() -> None:
    # Units of 250 bytes (fragments of 100, 100, 49), 60 (one packet) and 301 (100, 100, 100: a last fragment of
    # full size, which only the next unit's start can end).
    nals = [_nal([250, 60, 301][i % 3], i) for i in range(3 * (CONFIRM + 3))]
    packets, last = _stream(nals)
    units = NalUnits()
    out = _feed(units, [*packets, b""])
    assert [data for _, data in out[:-1]] == [START_CODE + nal for nal in nals]  # whole, in order, byte for byte
    assert out[-1] == (len(packets), b"")  # the stream's end: the decoder's flush, last
    assert units.trusted and not units.gave_up
    given_at = [n for n, _ in out[:-1]]
    # Until CONFIRM fragmented units have ended, each unit waits for the next one's first packet.
    learned = [i for i, nal in enumerate(nals) if len(nal) > P + 1][CONFIRM - 1]
    for i in range(learned + 1):
        assert given_at[i] == last[i] + 1, i
    # Then at its own last packet, except after a full-size last fragment (unit 301: ends only at the next start).
    for i in range(learned + 1, len(nals)):
        expected = last[i] + 1 if len(nals[i]) == 301 else last[i]
        assert given_at[i] == min(expected, len(packets)), (i, given_at[i], last[i])


def _full_then_short(nal: bytes) -> list[int]:
    body = len(nal) - 1 - P
    return [P] + [60] * (body // 60) + ([body % 60] if body % 60 else [])


def _full_then_long(nal: bytes) -> list[int]:
    return [P, len(nal) - 1 - P]


def _equal_shares(nal: bytes) -> list[int]:
    body = len(nal) - 1
    return [body // 3 + 1] * (body % 3) + [body // 3] * (3 - body % 3)


def _short_first_now_and_then(nal: bytes) -> list[int]:
    return [40, P, P, P, 59] if len(nal) == 400 else _mtu_cuts(nal)


@pytest.mark.parametrize("cut", [_equal_shares, _full_then_short, _full_then_long, _short_first_now_and_then])
def test_a_packetizer_that_cuts_otherwise_is_read_as_the_parser_reads(cut: Callable[[bytes], list[int]]) -> None:
    # Equal shares: 250 bytes in three of 83 (which alone would fit: 88 bytes first, then 83 and 83), then 400 and
    # 180 in shares of 133 and 60/59, whose first fragments are not 88 bytes. A full first fragment, then pieces of
    # 60: middle fragments short of P. A full first fragment, then the rest in one: a last one over P. MTU cuts but
    # the 400-byte units', whose first fragment is short. Either way the sizes are never trusted.
    nals = [_nal([250, 400, 180][i % 3], i) for i in range(12)]
    packets, last = _stream(nals, {i: cut(nal) for i, nal in enumerate(nals)})
    units = NalUnits()
    out = _feed(units, packets)
    assert [data for _, data in out] == [START_CODE + nal for nal in nals[:-1]]  # the last one waits for more
    assert units.gave_up and not units.trusted
    assert [n for n, _ in out] == [n + 1 for n in last[:-1]]  # each at the next unit's start, never sooner


@pytest.mark.parametrize("cuts", [[100, 40, 100], [40, 100, 100]])
def test_a_fragment_after_its_unit_was_given_out_stops_the_sizes_being_used(cuts: list[int]) -> None:
    # Regular MTU cuts until trusted, then a unit cut otherwise: a short middle fragment (taken as its last) or a short
    # first one (taken as a whole unit). The fragment after it shows the sizes misled: that unit was given out cut
    # short (the decoder conceals the rest of its frame), its remaining fragments are dropped, and from then on
    # units end at the next one's start, the parser's way.
    nals = [_nal(250, i) for i in range(CONFIRM + 1)] + [_nal(241, 99), _nal(250, 100), _nal(250, 101)]
    odd = CONFIRM + 1
    packets, last = _stream(nals, {odd: cuts})
    units = NalUnits()
    out = _feed(units, packets)
    assert units.gave_up and not units.trusted
    taken = [nals[odd][:1] + nals[odd][1 : 1 + sum(cuts[:2])], nals[odd][: 1 + cuts[0]]][cuts[0] < P]
    cut_at = last[odd - 1] + (1 if cuts[0] < P else 2)
    assert out[odd] == (cut_at, START_CODE + taken)
    assert out[odd + 1 :] == [(last[odd + 1] + 1, START_CODE + nals[odd + 1])]


def test_fragments_without_their_first_are_dropped() -> None:
    # A stream joined mid-unit (or over UDP, a first fragment lost): its bare fragments cannot be decoded alone.
    nal = _nal(250, 0)
    packets = [*list(_fu_a(nal, _mtu_cuts(nal)))[1:], START_CODE + _nal(50, 1)]
    units = NalUnits()
    assert _feed(units, packets) == []
    assert not units.gave_up  # nothing was given out early: no reason to distrust the sizes
    assert [bytes(p) for p in units.push(_packet(b""))] == [packets[-1], b""]


def test_one_packet_units_keep_their_packet_and_joined_units_their_first_timestamps() -> None:
    units = NalUnits()
    single = _packet(START_CODE + _nal(50, 0))
    assert units.push(single) == []
    fragments = list(_fu_a(_nal(250, 1), _mtu_cuts(_nal(250, 1))))
    first = _packet(fragments[0])
    first.pts = first.dts = 3000
    assert units.push(first) == [single]  # the same object: nothing copied
    for piece in fragments[1:]:
        assert units.push(_packet(piece)) == []
    (joined, end) = units.push(_packet(b""))
    assert (joined.pts, joined.dts) == (3000, 3000) and bytes(joined) == START_CODE + _nal(250, 1)
    assert bytes(end) == b""


def _hevc(kind: int, first_slice: bool = True, seed: int = 0) -> bytes:
    """An H.265 NAL unit with its start code: the two-byte header of type `kind`, then (for a slice) the
    first_slice_segment_in_pic_flag, then bytes without a start code in them."""
    body = np.random.default_rng(seed).integers(1, 255, 40, dtype=np.uint8).tobytes()
    flag = 0x80 if first_slice else 0x00
    return START_CODE + bytes([kind << 1, 1, flag | 0x11]) + body


def _pictures(slices: int, count: int) -> list[list[bytes]]:
    """`count` pictures of `slices` slices each: a key picture (VPS, SPS, PPS, prefix SEI, IDR slices), then trailing
    pictures (TRAIL_R slices)."""
    out = []
    for n in range(count):
        head = [_hevc(32), _hevc(33), _hevc(34), _hevc(39)] if n == 0 else []
        kind = 19 if n == 0 else 1
        out.append(head + [_hevc(kind, first_slice=i == 0, seed=10 * n + i) for i in range(slices)])
    return out


def test_one_slice_pictures_are_given_unit_by_unit_once_confirmed() -> None:
    pictures = _pictures(1, CONFIRM + 4)
    stage = SingleSlicePictures()
    given: list[tuple[int, bytes]] = []
    for n, units in enumerate(pictures):
        for unit in units:
            given += [(n, bytes(p)) for p in stage.push(_packet(unit))]
    assert stage.at_once and not stage.gave_up
    # Learning: each picture joined whole, given when the next begins (picture 0 at picture 1's first unit...).
    for n in range(CONFIRM):
        assert given[n] == (n + 1, b"".join(pictures[n])), n
    # Then each unit as it comes: the picture that was being joined when the lesson ended, then every later one.
    rest = given[CONFIRM:]
    assert [data for _, data in rest] == [unit for units in pictures[CONFIRM:] for unit in units]
    assert all(n == CONFIRM + 1 for n, _ in rest[:1]) and rest[-1][0] == len(pictures) - 1
    assert [bytes(p) for p in stage.push(_packet(b""))] == [b""]  # nothing held at the end


def test_pictures_of_several_slices_are_joined_whole_for_good() -> None:
    pictures = _pictures(3, CONFIRM + 3)
    stage = SingleSlicePictures()
    given = [bytes(p) for units in pictures for unit in units for p in stage.push(_packet(unit))]
    given += [bytes(p) for p in stage.push(_packet(b""))]
    assert not stage.at_once and stage.gave_up
    assert given == [b"".join(units) for units in pictures] + [b""]


def test_a_second_slice_after_the_lesson_drops_the_rest_of_that_picture_then_joins_pictures() -> None:
    pictures = _pictures(1, CONFIRM + 2) + _pictures(2, 3)[1:]
    stage = SingleSlicePictures()
    given = [bytes(p) for units in pictures for unit in units for p in stage.push(_packet(unit))]
    given += [bytes(p) for p in stage.push(_packet(b""))]
    assert stage.gave_up and not stage.at_once
    surprise = CONFIRM + 2  # the first two-slice picture: its first slice given alone, its second dropped
    assert given[-3:] == [pictures[surprise][0], b"".join(pictures[surprise + 1]), b""]
    assert pictures[surprise][1] not in given


def test_which_codecs_are_read_without_the_parser() -> None:
    assert isinstance(parserless("h264"), NalUnits)
    assert parserless("hevc") is not None
    assert parserless("mjpeg") is None and parserless("mpeg4") is None and parserless("") is None  # (live.py's)


def test_a_second_slice_right_when_the_lesson_ends_keeps_its_picture_whole() -> None:
    # The lesson ends as the next picture begins; that picture's first slice is still held, so a second slice
    # arriving then joins it: the picture is decoded whole, and pictures stay whole from then on.
    pictures = _pictures(1, CONFIRM) + _pictures(2, 4)[1:]
    stage = SingleSlicePictures()
    given = [bytes(p) for units in pictures for unit in units for p in stage.push(_packet(unit))]
    given += [bytes(p) for p in stage.push(_packet(b""))]
    assert stage.gave_up and not stage.at_once
    assert given == [b"".join(units) for units in pictures] + [b""]
