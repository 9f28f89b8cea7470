"""Where each packet's frame will be shown, known before it is decoded: what lets `read_frames` tell FFmpeg to skip
the non-reference frames that `vid_stride` leaves out (detector/runtime/video.py).

A clip's packets come in decoding order; with B-frames that is not the order they are shown in (I P B B, shown
I B B P), and a frame's number is its place in the showing order. That place is the count of the clip's frames
shown earlier, i.e. of smaller timestamp; every such frame is at most the decoder's reorder depth (16 frames in
H.264 and HEVC) after it in decoding order, so demuxing `LOOKAHEAD` packets ahead sees them all.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

# Packets demuxed ahead of the one ranked: twice H.264's and HEVC's largest reorder depth (16), so a frame shown
# earlier is never still in the file. Costs nothing but the packets held (compressed, a few kB each).
LOOKAHEAD = 32


class Packet(Protocol):
    """What is read of a demuxed packet (PyAV's `av.Packet`)."""

    @property
    def pts(self) -> int | None: ...

    @property
    def size(self) -> int: ...


P = TypeVar("P", bound=Packet)


def display_ranks(packets: Iterable[P]) -> Iterator[tuple[P, int | None]]:
    """Each of `packets` (decoding order) with its frame's place in the showing order, 0-based; the packets
    unchanged and in the same order. The empty packet that ends a stream (FFmpeg's flush) comes with None, and so
    does every packet from the first without a timestamp on, with those held back when it comes: their places are
    unknown (the caller counts frames as they come out of the decoder)."""
    seen: list[int] = []  # timestamps demuxed, sorted, but those dropped below
    below = 0  # timestamps dropped from `seen`: all smaller than any still to be ranked
    held: deque[tuple[P, int]] = deque()  # demuxed, not yet ranked, with their timestamps
    ranking = True
    for packet in packets:
        pts = packet.pts
        if packet.size and pts is not None and ranking:
            bisect.insort(seen, pts)
            held.append((packet, pts))
            if len(held) > LOOKAHEAD:
                first, first_pts = held.popleft()
                yield first, below + bisect.bisect_left(seen, first_pts)
                below += _drop_shown(seen, min(at for _, at in held))
            continue
        ranking = ranking and not packet.size  # a packet without a timestamp: nothing from here on is ranked
        while held:
            first, first_pts = held.popleft()
            yield first, below + bisect.bisect_left(seen, first_pts) if ranking else None
        yield packet, None
    while held:
        first, first_pts = held.popleft()
        yield first, below + bisect.bisect_left(seen, first_pts)


def _drop_shown(seen: list[int], smallest_pending: int) -> int:
    """Drop the timestamps smaller than every packet still to rank (and, by the reorder bound, every packet still
    to come), once `seen` has grown past a few windows; the count dropped. Keeps `seen` short on an hour-long clip
    (an insort into 100,000 timestamps moves 800 kB)."""
    if len(seen) < 4 * LOOKAHEAD:
        return 0
    count = bisect.bisect_left(seen, smallest_pending)
    del seen[:count]
    return count
