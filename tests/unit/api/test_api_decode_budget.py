"""The shared pixel budget: grants in arrival order, waits, gives up with 503, and never leaks on cancellation."""

from __future__ import annotations

import asyncio

import pytest

from api.decode_budget import PixelBudget
from api.errors import ServiceUnavailableError


def test_waiters_are_served_in_arrival_order_and_a_big_one_is_not_starved() -> None:
    async def main() -> list[str]:
        budget = PixelBudget(100)
        order: list[str] = []

        async def take(name: str, pixels: int, hold_s: float) -> None:
            async with budget.hold(pixels, wait_s=5):
                order.append(name)
                await asyncio.sleep(hold_s)

        first = asyncio.create_task(take("first", 60, 0.1))
        await asyncio.sleep(0.01)
        big = asyncio.create_task(take("big", 100, 0))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(take("small", 10, 0))  # fits now, but must not overtake the waiting big one
        await asyncio.gather(first, big, small)
        assert budget.held == 0
        return order

    assert asyncio.run(main()) == ["first", "big", "small"]


def test_a_full_budget_answers_503_after_the_wait_and_cancellation_gives_back() -> None:
    async def main() -> None:
        budget = PixelBudget(100)
        async with budget.hold(100, wait_s=1):
            with pytest.raises(ServiceUnavailableError, match="busy decoding"):
                async with budget.hold(50, wait_s=0.05):
                    pass
            waiter = asyncio.create_task(budget.hold(50, wait_s=5).__aenter__())
            await asyncio.sleep(0.01)
            waiter.cancel()  # the client went away while waiting
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert budget.held == 0 and not budget._waiters

    asyncio.run(main())


def test_try_take_never_jumps_the_queue_and_shrink_lets_a_waiter_in() -> None:
    async def main() -> None:
        budget = PixelBudget(100)
        taken = budget.try_take(80)  # the fast path: the largest image allowed, before its size is known
        assert taken == 80 and budget.held == 80
        assert budget.try_take(30) == 0  # does not fit: nothing taken
        waiter = asyncio.create_task(_hold(budget, 50))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        assert budget.try_take(5) == 0  # fits, but someone is waiting: first come, first served
        kept = budget.shrink(taken, 20)  # the image turned out to need 20: the rest goes to the waiter at once
        assert kept == 20
        await asyncio.wait_for(waiter, 1)
        budget.give_back(kept)
        assert budget.held == 0

    asyncio.run(main())


async def _hold(budget: PixelBudget, pixels: int) -> None:
    async with budget.hold(pixels, wait_s=5):
        pass
