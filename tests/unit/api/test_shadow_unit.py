"""api.monitoring.shadow.Shadow without a server or a model: what it does with a challenger that fails at inference, a
served model reloaded with other classes, a full queue, and no challenger at all."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from api.inference.batching import InferenceResult, Thresholds
from api.monitoring.metrics import Metrics
from api.monitoring.shadow import Shadow
from detector.config import ShadowConfig
from detector.runtime import Detections
from tests.fakes import FakeDetector

NAMES = {"0": "circle"}
KEY = Thresholds(0.25, 0.7, 300)
IMAGE = np.zeros((8, 8, 3), np.uint8)


def outcome(names: dict[str, str] = NAMES) -> InferenceResult:
    timings = {"preprocess": 1.0, "inference": 2.0, "postprocess": 0.5}
    return InferenceResult(Detections.empty({int(k): v for k, v in names.items()}), {"names": names}, 1, timings)


def shadow(challenger: FakeDetector | None, busy: bool = False, **settings: Any) -> Shadow:
    loader = None if challenger is None else (lambda path, backend: challenger)
    config = ShadowConfig(model="" if challenger is None else "/srv/models/challenger.onnx", **settings)
    return Shadow(config, "onnxruntime", loader, Metrics(), served_busy=lambda: busy, served_names=lambda: NAMES)


def settle(s: Shadow, until: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_no_challenger_is_off_and_offers_are_no_ops() -> None:
    s = shadow(None)
    s.start()
    s.offer(IMAGE, outcome(), KEY)
    assert s.snapshot()["status"] == "off" and s.snapshot()["challenger"] is None and s.samples == 0


def test_a_challenger_failing_at_inference_stops_scoring_and_offers_never_raise() -> None:
    fake = FakeDetector(info={"names": NAMES}, fail=RuntimeError("kaput in /srv/models/challenger.onnx"))
    s = shadow(fake)
    s.start()
    settle(s, lambda: s.status == "running")
    s.offer(IMAGE, outcome(), KEY)
    settle(s, lambda: s.status == "failed")
    s.offer(IMAGE, outcome(), KEY)  # after the failure: ignored, no exception
    body = s.snapshot()
    assert body["status"] == "failed" and body["errors"] == 1 and body["samples"] == 0
    assert "kaput in challenger.onnx" in body["detail"] and "/srv" not in body["detail"]
    s.close()
    assert fake.closed


def test_a_served_model_reloaded_with_other_classes_fails_the_shadow() -> None:
    s = shadow(FakeDetector(info={"names": NAMES}))
    s.start()
    settle(s, lambda: s.status == "running")
    s.offer(IMAGE, outcome(), KEY)
    settle(s, lambda: s.samples == 1)
    s.offer(IMAGE, outcome({"0": "cat"}), KEY)
    settle(s, lambda: s.status == "failed")
    assert s.samples == 1 and "classes differ" in str(s.detail)
    s.close()


def test_sheds_when_requests_queue_and_when_its_queue_is_full() -> None:
    gate = threading.Event()
    fake = FakeDetector(info={"names": NAMES}, gate=gate)
    s = shadow(fake, queue=1)
    s.start()
    settle(s, lambda: s.status == "running")
    s.offer(IMAGE, outcome(), KEY)
    assert fake.entered.wait(5)  # being scored, held at the gate
    for _ in range(3):  # one waits in the queue, two are shed
        s.offer(IMAGE, outcome(), KEY)
    assert s.shed == 2
    busy = shadow(FakeDetector(info={"names": NAMES}), busy=True)
    busy.status = "running"  # not started: only the decision to shed is under test
    busy.offer(IMAGE, outcome(), KEY)
    assert busy.shed == 1
    gate.set()
    settle(s, lambda: s.samples == 2)
    assert s.samples == 2 and s.snapshot()["latency_ms"]["served_p50"] == 3.5
    s.close()


@pytest.mark.parametrize(("echo", "expected"), [(True, 1), (False, 0)])
def test_a_disagreement_calls_back_and_an_agreement_does_not(echo: bool, expected: int) -> None:
    """The inbox keeps an image the challenger disagreed on through `on_disagree` (`Pipeline._answer`). With `echo`
    the challenger finds one box where the served model found none."""
    s = shadow(FakeDetector(info={"names": NAMES}, echo=echo))
    s.start()
    settle(s, lambda: s.status == "running")
    called: list[int] = []
    s.offer(IMAGE, outcome(), KEY, on_disagree=lambda: called.append(1))
    settle(s, lambda: s.samples == 1)
    s.close()
    assert s.samples == 1 and len(called) == expected
