"""Which of a few ways of running a loop is the fastest here and now, found by timing each while the loop runs.

Why timed and not reasoned out: how a clip's frames are best run depends on how much of the CPU its decoding
takes, which depends on the codec, the frame size, `vid_stride`, the model and the machine. On the same 2-core Intel
AMX VM, frames one at a time on one thread beat two at a time on OpenVINO's streams by 17-19 % for a 720p H.264
clip at `vid_stride` 3 with the 256 px INT8 model, and lost by 20-45 % with the 640 px one or an MPEG-4 clip
(detector/runtime/video_detect.py). A rule fitted to those cells would be wrong on the next machine; a stopwatch is
not.

`FastestOf` runs one way, and every so often (a round) times each in turn for a few items, several times over,
alternating, then keeps the fastest. Alternating, because what an item costs changes along a clip (a cut to a busier
scene decodes slower): timed one after the other for 32 frames each, the faster way measured 13-18 % slower than
the other, each round, on the clip where it was 15 % faster over the whole clip. A way well behind after the first
pass leaves the round, and the time kept between rounds doubles while the same way keeps winning, so the slower way
costs a few percent at most: what is left of the gain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("detector.runtime.fastest")

T = TypeVar("T")


class FastestOf(Generic[T]):
    """Chooses among ways of running a loop (`current`), told each time an item is done (`done`).

    A round makes `passes` passes over the ways; in each, a way runs `settle` items (calls of the way before still
    finishing) and then `trial` timed ones. After the first pass, a way under `give_up` times the best rate leaves
    the round. The fastest over the round (items over seconds, all passes) is then kept for `keep` items, twice as
    many after each round it wins again (up to `keep_most`). A way added later (`add`: one that needed loading first)
    starts a round at once, or joins the one under way."""

    def __init__(
        self,
        first: T,
        *,
        settle: int = 2,
        trial: int = 8,
        passes: int = 4,
        give_up: float = 0.7,
        keep: int = 256,
        keep_most: int = 4096,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if trial < 1 or passes < 1:
            raise ValueError(f"trial and passes must be at least 1 (got {trial}, {passes})")
        self._ways = [first]
        self._settle, self._trial, self._passes, self._give_up = settle, trial, passes, give_up
        self._keep_least, self._keep_most = keep, keep_most
        self._keep = keep
        self._clock = clock
        self._at = 0  # the way running
        self._winner = 0  # the way kept between rounds
        self._phase = "keep"
        self._count = 0  # items done in this phase
        self._started = 0.0  # when the trial's timing began
        self._pass = 0  # passes made in this round
        self._to_try: list[int] = []  # ways still to time in this pass
        self._in_round: list[int] = []  # ways still timed in this round
        self._timed: dict[int, tuple[int, float]] = {}  # way -> (items, seconds), this round

    @property
    def current(self) -> T:
        return self._ways[self._at]

    @property
    def ways(self) -> int:
        return len(self._ways)

    def rate(self, way: int) -> float:
        """Items per second of `way` in the last round it was timed in (0 if never)."""
        items, seconds = self._timed.get(way, (0, 0.0))
        return items / seconds if seconds > 0 else 0.0

    def add(self, way: T) -> None:
        """Another way to try: timed against the others from now on."""
        self._ways.append(way)
        if self._phase == "keep":
            self._start_round()
        else:  # timed in the pass under way, as if it had been there from the start of the round
            self._in_round.append(len(self._ways) - 1)
            self._to_try.append(len(self._ways) - 1)

    def done(self) -> None:
        """One item of the loop finished (under `current`, give or take the ones in flight when it changed)."""
        self._count += 1
        if self._phase == "settle":
            if self._count >= self._settle:
                self._phase, self._count, self._started = "trial", 0, self._clock()
        elif self._phase == "trial":
            if self._count >= self._trial:
                items, seconds = self._timed.get(self._at, (0, 0.0))
                self._timed[self._at] = items + self._count, seconds + self._clock() - self._started
                self._next_trial()
        elif self._count >= self._keep and len(self._ways) > 1:
            self._start_round()

    def _start_round(self) -> None:
        # The way kept so far first: the others are timed against its pace from the first pass on.
        self._in_round = [self._winner] + [i for i in range(len(self._ways)) if i != self._winner]
        self._timed, self._pass = {}, 0
        self._to_try = list(self._in_round)
        self._next_trial()

    def _next_trial(self) -> None:
        if not self._to_try:
            self._pass += 1
            if self._pass == 1:  # a way far behind after one pass is not timed again this round
                best = max(self.rate(i) for i in self._in_round)
                self._in_round = [i for i in self._in_round if self.rate(i) >= self._give_up * best]
            if self._pass < self._passes and len(self._in_round) > 1:
                self._to_try = list(self._in_round)
        if self._to_try:
            self._at, self._phase, self._count = self._to_try.pop(0), "settle", 0
            return
        fastest = max(self._in_round, key=self.rate)
        self._keep = min(2 * self._keep, self._keep_most) if fastest == self._winner else self._keep_least
        self._winner = self._at = fastest
        self._phase, self._count = "keep", 0
        log.debug(
            "fastest of %d ways: %d %s", len(self._ways), fastest, {i: round(self.rate(i), 1) for i in self._timed}
        )
