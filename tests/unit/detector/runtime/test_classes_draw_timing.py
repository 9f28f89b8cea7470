"""The class filter, the drawing, and the Server-Timing header, as units."""

from __future__ import annotations

import numpy as np
import pytest

from api.routes.encoding import server_timing
from detector.errors import InvalidInputError
from detector.runtime import Detections
from detector.runtime.classes import filter_classes, parse_classes
from detector.runtime.draw import draw_detections, encode_jpeg
from detector.runtime.model_source import is_registry_uri, parse_registry_uri

NAMES = {0: "circle", 1: "square", 2: "triangle"}


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    arr = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(arr[:, :4], arr[:, 4], arr[:, 5].astype(np.int64), NAMES)


def test_parse_classes_names_ids_lists() -> None:
    assert parse_classes("circle,square", NAMES) == {0, 1}
    assert parse_classes(" Triangle , 0 ,", NAMES) == {0, 2}
    assert parse_classes(["square", 2], NAMES) == {1, 2}
    for bad, needle in [("", "empty"), (",,", "empty"), ([], "empty"), ("dog", "'dog'"), ("3", "'3'"), ("-1", "'-1'")]:
        with pytest.raises(InvalidInputError, match=needle) as info:
            parse_classes(bad, NAMES)
        assert "0=circle, 1=square, 2=triangle" in str(info.value)


def test_filter_classes() -> None:
    d = dets((0, 0, 5, 5, 0.9, 0), (1, 1, 6, 6, 0.8, 1), (2, 2, 7, 7, 0.7, 2))
    assert filter_classes(d, None) is d
    kept = filter_classes(d, frozenset({0, 2}))
    assert kept.class_id.tolist() == [0, 2] and kept.confidence.tolist() == pytest.approx([0.9, 0.7])
    assert len(filter_classes(d, frozenset({5}))) == 0


def test_draw_colours_are_stable_per_class_and_input_untouched() -> None:
    image = np.full((100, 120, 3), 200, np.uint8)
    a = draw_detections(image, dets((10, 30, 50, 70, 0.9, 1)))
    b = draw_detections(image, dets((60, 30, 100, 70, 0.5, 0), (10, 30, 50, 70, 0.9, 1)))
    assert (image == 200).all() and a.shape == image.shape and a.dtype == np.uint8
    assert (a[50, 10] == b[50, 10]).all()  # class 1's left edge: the same colour whatever else is in the image
    assert not (a[50, 10] == 200).all()
    assert not (b[50, 60] == b[50, 10]).all()  # class 0 has another colour
    assert (draw_detections(image, Detections.empty(NAMES)) == image).all()
    assert encode_jpeg(a)[:2] == b"\xff\xd8"


def test_server_timing_header() -> None:
    assert server_timing({"read": 0.1, "queue wait": 2.0, "total": 12.345}) == (
        "read;dur=0.1, queue_wait;dur=2, total;dur=12.345"
    )


def test_registry_uris() -> None:
    assert is_registry_uri("models:/yolo-detector@champion") and not is_registry_uri("models/model.onnx")
    ref = parse_registry_uri("models:/yolo-detector@champion")
    assert (ref.name, ref.alias, ref.version) == ("yolo-detector", "champion", None)
    assert parse_registry_uri("models:/m/3").version == "3"
    with pytest.raises(Exception, match="models:/<name>@<alias>"):
        parse_registry_uri("models:/m")
