"""`FastestOf`: which way of running a loop it keeps, timed on a fake clock where each way costs a known time an item.

The numbers: settle 2, trial 8, 4 passes (the defaults), so a round in which both ways stay costs 4 x (2 + 8) items of
each, and one where a way leaves after the first pass 2 + 8 of it."""

from __future__ import annotations

import pytest

from detector.runtime.fastest import FastestOf


class Loop:
    """Items run under `fastest.current`, each taking `cost[way]` seconds on the clock `fastest` reads."""

    def __init__(self, cost: dict[str, float], **options: float) -> None:
        self.now = 0.0
        self.cost = cost
        self.fastest = FastestOf("streams", clock=lambda: self.now, **options)  # type: ignore[arg-type]
        self.ran: list[str] = []

    def run(self, items: int) -> None:
        for _ in range(items):
            way = self.fastest.current
            self.now += self.cost[way]
            self.ran.append(way)
            self.fastest.done()


def test_one_way_runs_alone_and_is_never_timed() -> None:
    loop = Loop({"streams": 0.01})
    loop.run(5000)
    assert set(loop.ran) == {"streams"} and loop.fastest.ways == 1


def test_a_faster_way_added_wins_its_first_round_and_is_then_kept() -> None:
    loop = Loop({"streams": 0.010, "one thread": 0.008})
    loop.run(10)
    loop.fastest.add("one thread")
    loop.run(80)  # the round: four passes of 10 items over the two ways, the way kept so far first
    assert loop.ran[10:] == (["streams"] * 10 + ["one thread"] * 10) * 4
    assert loop.fastest.rate(1) == pytest.approx(125.0) and loop.fastest.rate(0) == pytest.approx(100.0)
    loop.run(256)
    assert set(loop.ran[90:]) == {"one thread"}


def test_the_time_kept_doubles_while_the_same_way_wins_and_resets_when_another_does() -> None:
    loop = Loop({"streams": 0.010, "one thread": 0.008})
    loop.fastest.add("one thread")
    loop.run(80 + 256)  # round 1, then 256 kept
    assert loop.ran[80:] == ["one thread"] * 256
    loop.run(80 + 512)  # round 2 (the winner first), then twice as long
    assert loop.ran[-512:] == ["one thread"] * 512
    loop.cost["streams"] = 0.005  # the clip changes: the streams are now faster (the other way leaves the round)
    loop.run(20)
    assert loop.ran[-20:] == ["one thread"] * 10 + ["streams"] * 10 and loop.fastest.current == "streams"
    loop.run(256 + 20)  # kept for 256 again, not 1024: the next round comes
    assert loop.ran[-276:] == ["streams"] * 266 + ["one thread"] * 10


def test_a_way_far_behind_leaves_the_round_after_one_pass() -> None:
    loop = Loop({"streams": 0.010, "one thread": 0.016})  # 0.625 of the streams' rate, under give_up 0.7
    loop.fastest.add("one thread")
    loop.run(20 + 256)
    assert loop.ran[:20] == ["streams"] * 10 + ["one thread"] * 10
    assert loop.ran[20:] == ["streams"] * 256


def test_a_way_somewhat_slower_stays_for_every_pass_and_loses() -> None:
    loop = Loop({"streams": 0.010, "one thread": 0.012})
    loop.fastest.add("one thread")
    loop.run(80 + 10)
    assert loop.ran[:80].count("one thread") == 40 and loop.ran[80:] == ["streams"] * 10


def test_the_settling_items_are_not_timed() -> None:
    """The first items after a switch finish calls of the way before: a slow one there is not the new way's."""
    loop = Loop({"streams": 0.010, "one thread": 0.008}, passes=1)
    loop.fastest.add("one thread")
    loop.run(10)  # streams' settle and trial
    loop.now += 5.0  # a stall while the first item of the other way settles
    loop.run(10 + 1)
    assert loop.fastest.rate(1) == pytest.approx(125.0) and loop.fastest.current == "one thread"


def test_a_way_added_during_a_round_joins_it() -> None:
    loop = Loop({"streams": 0.010, "one thread": 0.012, "third": 0.005})
    loop.fastest.add("one thread")
    loop.run(5)
    loop.fastest.add("third")
    loop.run(200)
    assert "third" in loop.ran[:100] and loop.ran[-50:] == ["third"] * 50


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FastestOf("a", trial=0)
