"""The answers the routes send unvalidated (`PredictionResponse.body`, `VideoFrame.body`) are exactly what their
documented models accept and give back: the two cannot drift apart without a test failing."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from api.routes.encoding import BodyResponse
from api.schemas import (
    AnnotatedPredictionResponse,
    BatchItemError,
    BatchResponse,
    ItemError,
    PredictionResponse,
    VideoFrame,
    ndjson,
    to_json,
)
from detector.runtime.detections import Detections

MODEL = {"name": "yolov8n", "version": "yolov8n-v1-529085f7", "backend": "openvino", "names": {"0": "circle"}}
TIMINGS = {"read": 0.05, "decode": 1.5, "queue_wait": 0.2, "inference": 9.25, "total": 12.0}


def detections(n: int, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 600, (n, 2)).astype(np.float32)
    return Detections(
        xyxy=np.hstack([xy, xy + rng.uniform(1, 80, (n, 2)).astype(np.float32)]),
        # the extremes too: 0 and 1 are the model's bounds on confidence
        confidence=np.concatenate([[0.0, 1.0], rng.uniform(0, 1, max(n - 2, 0))])[:n].astype(np.float32),
        class_id=rng.integers(0, 3, n),  # class 2 has no name: sent as "2"
        names={0: "circle", 1: 'a "quoted" \\ name, é'},
    )


def round_trip(model: type[BaseModel], body: dict[str, Any]) -> None:
    """`model` validates `body` and dumps it back unchanged; the bytes sent decode to `body`."""
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
    assert json.loads(to_json(body)) == body


@pytest.mark.parametrize("n", [0, 1, 2, 120])
def test_a_predict_body_is_what_its_model_documents(n: int) -> None:
    body = PredictionResponse.body(detections(n), (1080, 810), MODEL, TIMINGS)
    round_trip(PredictionResponse, body)
    assert len(body["detections"]) == n
    assert "names" not in body["model"]  # only the documented fields of the model's description
    if n:
        assert {row["class_name"] for row in body["detections"]} <= {"circle", 'a "quoted" \\ name, é', "2"}


def test_an_annotated_body_carries_its_image() -> None:
    image = {"media_type": "image/jpeg", "width": 810, "height": 1080, "base64": "/9j/4AAQ"}
    body = AnnotatedPredictionResponse.body(detections(5), (1080, 810), MODEL, TIMINGS, annotated_image=image)
    round_trip(AnnotatedPredictionResponse, body)


def test_a_batch_body_mixes_answers_and_the_errors_of_single_images() -> None:
    """The batch route's dict holds answers as dicts and errors as models; encoded, it is a `BatchResponse`."""
    results = [
        PredictionResponse.body(detections(3), (64, 64), MODEL, TIMINGS),
        BatchItemError(error=ItemError(status=415, detail="not an image")),
    ]
    sent = json.loads(BodyResponse({"results": results, "timings_ms": {"read": 0.3, "total": 6.1}}).body)
    assert BatchResponse.model_validate(sent).model_dump(mode="json", exclude_unset=True) == sent
    assert sent["results"][1] == {"error": {"status": 415, "detail": "not an image"}}


@pytest.mark.parametrize("tracked", [False, True])
@pytest.mark.parametrize("timed", [False, True])
def test_a_video_line_is_what_its_model_documents(tracked: bool, timed: bool) -> None:
    dets = detections(4)
    track_ids: list[int | None] | None = [7, None, 8, 9] if tracked else None
    line = VideoFrame.body(12, 0.4000001, dets, track_ids, TIMINGS if timed else None)
    round_trip(VideoFrame, line)
    assert line["time_s"] == 0.4
    assert ("timings_ms" in line) is timed
    assert all(("track_id" in row) is tracked for row in line["detections"])
    encoded = ndjson(line)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1  # one line, whatever the names hold
    assert json.loads(encoded) == line


def test_floats_are_sent_as_rounded() -> None:
    """Confidence to 5 decimals and corners to 2 (`Detections.to_list`), whatever float32 held."""
    dets = Detections(
        xyxy=np.array([[10.123456, 20.987654, 30.25, 40.0]], np.float32),
        confidence=np.array([0.123456789], np.float32),
        class_id=np.array([0]),
        names={0: "circle"},
    )
    row = json.loads(to_json(PredictionResponse.body(dets, (64, 64), MODEL, TIMINGS)))["detections"][0]
    assert row["confidence"] == 0.12346
    assert row["box"] == {"x1": 10.12, "y1": 20.99, "x2": 30.25, "y2": 40.0}
