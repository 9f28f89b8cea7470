"""ModelMetadata: what `detector export onnx` embeds is what the runtime reads back; older files keep loading."""

from __future__ import annotations

import json

import pytest

from detector.errors import MissingMetadataError
from detector.runtime.metadata import METADATA_KEY, ModelMetadata


def test_round_trip() -> None:
    meta = ModelMetadata(names={0: "circle", 1: "square"}, imgsz=(256, 320), head="end2end", version="v-1")
    back = ModelMetadata.from_json(meta.to_json())
    assert back == meta and back.num_classes == 2


def test_files_written_with_keys_that_no_longer_exist_still_load() -> None:
    """ONNX files exported before `task`/`extra` were dropped carry them; they are ignored, not an error."""
    old = {"names": {"0": "a"}, "imgsz": [64, 64], "task": "detect", "extra": {"k": 1}, "version": "old"}
    meta = ModelMetadata.from_props({METADATA_KEY: json.dumps(old)}, source="old.onnx")
    assert meta.names == {0: "a"} and meta.imgsz == (64, 64) and meta.version == "old"


def test_ultralytics_keys_are_read_when_ours_are_absent() -> None:
    props = {"names": "{0: 'person', 1: 'bus'}", "imgsz": "[640, 640]", "stride": "32", "end2end": "True"}
    meta = ModelMetadata.from_props(props, source="u.onnx")
    assert meta.names == {0: "person", 1: "bus"} and meta.head == "end2end" and meta.imgsz == (640, 640)


def test_no_metadata_says_how_to_export() -> None:
    with pytest.raises(MissingMetadataError, match="detector export onnx"):
        ModelMetadata.from_props({}, source="bare.onnx")
