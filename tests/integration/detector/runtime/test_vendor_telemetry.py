"""OpenVINO's and NNCF's usage telemetry stay off in a process that loads an OpenVINO model or quantizes
(detector/runtime/backends/vendor_telemetry.py): their converter and NNCF fall back to their own no-op stubs, and no
process is forked to post an event. In a child process, as a user's `detector serve` or `detector export int8` starts
(pytest's own process is where NNCF already turns its telemetry off by itself)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detector.runtime import backends
from tests.child_process import python_child

CHILD = textwrap.dedent(
    """
    import multiprocessing, sys
    import numpy as np
    from detector.runtime import Detector

    with Detector.load(sys.argv[1], backend="openvino") as detector:  # ov.convert_model: OpenVINO's converter
        detector.predict(np.full((96, 128, 3), 90, np.uint8))
    import nncf  # noqa: F401  (what `detector export int8` imports)
    import openvino.tools.ovc.convert_impl as converter
    from nncf.telemetry import wrapper

    print("converter:", converter.tm.__name__)
    print("nncf:", type(wrapper.telemetry).__name__)
    print("forked:", len(multiprocessing.active_children()))
    """
)


def test_loading_an_openvino_model_and_importing_nncf_send_nothing(model_path: Path) -> None:
    if backends.available().get("openvino"):
        pytest.skip("openvino is not available here")
    out = python_child(CHILD, str(model_path))
    assert "converter: openvino.tools.ovc.telemetry_stub" in out, out
    assert "nncf: MagicMock" in out, out  # NNCF's stub
    assert "forked: 0" in out, out
