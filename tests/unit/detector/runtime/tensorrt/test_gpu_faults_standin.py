"""Issue 25 (TensorRT, third pass), against the CPU stand-in, the part that needs no trained model:

D7  one thread's TensorRT errors are not reported as another's.

The other items, on the trained quick model, are in
tests/integration/detector/runtime/tensorrt/test_gpu_faults_standin.py.
"""

from __future__ import annotations

import threading
from types import ModuleType

# --- D7: error attribution --------------------------------------------------------------------------------------------


def test_one_threads_tensorrt_errors_are_not_reported_as_anothers(standin: ModuleType) -> None:
    from detector.runtime.backends.tensorrt_logger import describe_errors, error_mark, trt_logger

    logger = trt_logger()
    marked = threading.Event()
    logged = threading.Event()
    seen: dict[str, str] = {}

    def slot_a() -> None:
        mark = error_mark()
        marked.set()
        assert logged.wait(5)
        seen["a"] = describe_errors(mark)

    def slot_b() -> None:
        assert marked.wait(5)
        mark = error_mark()
        logger.log(standin.trt.ILogger.ERROR, "slot b: enqueueV3 failed")
        seen["b"] = describe_errors(mark)
        logged.set()

    threads = [threading.Thread(target=slot_a), threading.Thread(target=slot_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert "slot b" in seen["b"]
    assert "slot b" not in seen["a"]
    # An error logged on a thread that takes no marks (TensorRT's own worker threads) still counts for everyone.
    mark = error_mark()
    worker = threading.Thread(target=lambda: logger.log(standin.trt.ILogger.ERROR, "builder worker: tactic failed"))
    worker.start()
    worker.join()
    assert "builder worker" in describe_errors(mark)
