"""The shared pixel budget: grants in arrival order, waits, gives up with 503, and never leaks on cancellation;
every route keeps a decoded image's pixels counted while its array lives (inference, drawing)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import api.routes.annotated
from api.admission.pixel_budget import PixelBudget
from api.app import create_app
from api.errors import ServiceUnavailableError
from detector.config import load_config
from detector.runtime import Detections
from tests.fakes import FakeDetector

REPO = Path(__file__).resolve().parents[3]
WIDTH, HEIGHT = 320, 240


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


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def _ready_client(detector: FakeDetector) -> TestClient:
    app = create_app(load_config(config_dir=REPO / "configs", environ={}), lambda path, backend: detector)
    return TestClient(app)


def _wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "the app did not become ready"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("path", "field"), [("/predict", "file"), ("/predict/annotated", "file"), ("/predict/batch", "files")]
)
def test_the_decoded_pixels_stay_counted_while_inference_runs(path: str, field: str) -> None:
    """The model blocks on `gate`; meanwhile the budget must still hold the image's pixels. Before the fix,
    /predict/batch and /predict/annotated gave them back as soon as the decode ended (held was 0 here)."""
    gate = threading.Event()
    detector = FakeDetector(gate=gate)
    responses: list[Any] = []
    with _ready_client(detector) as client:
        _wait_ready(client)
        budget = client.app.state.service.pixels  # type: ignore[attr-defined]
        sender = threading.Thread(
            target=lambda: responses.append(client.post(path, files={field: ("a.png", _png(), "image/png")}))
        )
        sender.start()
        try:
            assert detector.entered.wait(5), "inference never started"
            held_during_inference = budget.held  # an int written on the event loop only: a plain read is safe
        finally:
            gate.set()
            sender.join(10)
        assert responses and responses[0].status_code == 200, responses
        assert held_during_inference >= WIDTH * HEIGHT
        assert budget.held == 0  # and given back once the answer is built


def test_the_annotated_image_stays_counted_while_it_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    held_while_drawing: list[int] = []
    with _ready_client(FakeDetector(echo=True)) as client:
        _wait_ready(client)
        budget = client.app.state.service.pixels  # type: ignore[attr-defined]
        draw = api.routes.annotated.draw_detections

        def watched_draw(image: npt.NDArray[np.uint8], detections: Detections) -> npt.NDArray[np.uint8]:
            held_while_drawing.append(budget.held)
            return draw(image, detections)

        monkeypatch.setattr(api.routes.annotated, "draw_detections", watched_draw)
        r = client.post("/predict/annotated", files={"file": ("a.png", _png(), "image/png")})
        assert r.status_code == 200, r.text
        assert held_while_drawing and held_while_drawing[0] >= WIDTH * HEIGHT
        assert budget.held == 0
