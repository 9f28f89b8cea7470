"""A model loaded before `freeze_startup_objects` is still freed when the service replaces it (`/admin/reload`, a
registry alias that moves): frozen objects are freed by reference counting only, so a reference cycle through a
loaded model would keep its compiled network in memory after every reload. In a child process: freezing the test
process would keep the suite's own objects frozen."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detector.runtime import backends
from tests.child_process import python_child

CHILD = textwrap.dedent(
    """
    import sys, weakref
    import numpy as np
    from detector.runtime import Detector
    from detector.runtime.heap import freeze_startup_objects

    detector = Detector.load(sys.argv[1], backend=sys.argv[2])
    detector.predict(np.full((96, 128, 3), 90, np.uint8))
    held = {"detector": weakref.ref(detector), "backend": weakref.ref(detector.backend)}
    freeze_startup_objects()
    detector.close()
    del detector
    alive = sorted(name for name, ref in held.items() if ref() is not None)
    print("alive:", ",".join(alive) or "none")
    """
)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_model_loaded_before_the_freeze_is_freed_when_dropped(model_path: Path, backend: str) -> None:
    if backends.available().get(backend):
        pytest.skip(f"{backend} is not available here")
    out = python_child(CHILD, str(model_path), backend)
    assert out.strip().endswith("alive: none"), out
