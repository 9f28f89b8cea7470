"""`display_ranks` gives each packet its frame's place in the showing order before it is decoded, from the
timestamps alone: B-frames reordered as x264 and FFmpeg order them, a long clip (where it drops what it no longer
needs), and nothing claimed where a packet has no timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from detector.runtime.display_order import LOOKAHEAD, display_ranks


@dataclass(frozen=True)
class FakePacket:
    pts: int | None
    size: int = 100


def _decoding_order(shown: int, group: int = 4) -> list[int]:
    """The places (0-based) of `shown` frames in decoding order for a GOP of I/P then B-frames: shown I B B B P B B
    B P..., decoded I P B B B P B B B (each P before the Bs shown ahead of it)."""
    places, start = [0], 1
    while start < shown:
        anchor = min(start + group - 1, shown - 1)
        places += [anchor, *range(start, anchor)]
        start = anchor + 1
    assert sorted(places) == list(range(shown))
    return places


@pytest.mark.parametrize("shown", [1, 5, 31, 33, 64, 1000])
def test_every_packet_gets_the_place_its_frame_is_shown_at(shown: int) -> None:
    packets = [FakePacket(512 * p) for p in _decoding_order(shown)] + [FakePacket(None, size=0)]  # the flush
    out = list(display_ranks(packets))
    assert [p for p, _ in out] == packets  # the same packets, in the same order
    assert [rank for _, rank in out] == [p.pts // 512 for p in packets[:-1]] + [None]  # type: ignore[operator]


def test_places_stay_right_on_a_long_clip_with_a_large_start_and_reordering_up_to_the_limit() -> None:
    shown = 20 * LOOKAHEAD
    pts = [90_000 + 3000 * p for p in _decoding_order(shown, group=16)]  # 16 frames reordered: H.264's largest
    ranks = [rank for _, rank in display_ranks(FakePacket(t) for t in pts)]
    assert ranks == [(t - 90_000) // 3000 for t in pts]


def test_from_the_first_packet_without_a_timestamp_on_no_place_is_claimed() -> None:
    pts: list[int | None] = [512 * p for p in (0, 2, 1, 4, 3)]
    packets = [FakePacket(t) for t in [*pts, None, 6 * 512, 5 * 512]]
    ranks = [rank for _, rank in display_ranks(packets)]
    # the packets held back when it came were demuxed before it, but what follows cannot be known: all None
    assert ranks == [None] * len(packets)


def test_a_clip_shorter_than_the_lookahead_and_without_a_flush_is_ranked_at_its_end() -> None:
    packets = [FakePacket(512 * p) for p in (0, 3, 1, 2)]
    assert [rank for _, rank in display_ranks(packets)] == [0, 3, 1, 2]
