"""Input validation (unknown backends, bad models, bad budgets) and the target evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.backend_bench import Samples, in_call_overhead, interleave, resolve_backends
from benchmarks.errors import BenchmarkInputError
from benchmarks.inputs import load_model_info, take
from benchmarks.runners import Calls
from benchmarks.stats import Budget, summarize
from benchmarks.targets import evaluate_targets


def test_unknown_backend_is_rejected_by_name() -> None:
    with pytest.raises(BenchmarkInputError, match=r"unknown backend.*nonsense"):
        resolve_backends(["onnxruntime", "nonsense"])


def test_default_backends_are_the_available_ones() -> None:
    names, skipped = resolve_backends(None)
    assert "onnxruntime" in names
    assert not set(names) & set(skipped)


def test_corrupt_model_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00not an onnx file" * 10)
    with pytest.raises(BenchmarkInputError, match="cannot be used"):
        load_model_info(bad)
    with pytest.raises(BenchmarkInputError, match="not found"):
        load_model_info(tmp_path / "missing.onnx")


def test_take_cycles_images() -> None:
    a, b = object(), object()
    assert take([a, b], 5) == [a, b, a, b, a]  # type: ignore[list-item]


def recording(order: list[str], name: str) -> Calls:
    """A runner whose every call appends its name to `order` and reports 1 ms of inference."""

    def call() -> float:
        order.append(name)
        return 1.0

    return Calls(call, None)


def test_interleave_rounds_and_isolates_failures() -> None:
    order: list[str] = []

    def broken() -> float:
        raise RuntimeError("backend crashed")

    calls = {"a": recording(order, "a"), "b": recording(order, "b"), "c": Calls(broken, None)}
    samples, errors = interleave(calls, Budget(warmup=1, min_iters=4, max_iters=4, max_seconds=60))
    assert errors == {"c": "RuntimeError: backend crashed"}
    assert len(samples["a"].end_to_end) == len(samples["b"].end_to_end) == 4
    assert samples["a"].backend_only == [1.0] * 4  # no separate backend call: the in-call reading stands in
    # Warm-up, then 4 timed rounds whose starting runner rotates over all three (the failed one is skipped).
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "a", "b"]


def _c(runner: str, size: int, batch: int, p50: float, **extra: Any) -> dict[str, Any]:
    return {"runner": runner, "size": size, "batch": batch, "end_to_end": summarize([p50], batch), **extra}


def test_targets_met_and_missed() -> None:
    cells = [
        _c("openvino", 640, 1, 80.0, overhead_fraction=0.05, pct_of_peak=60.0),
        _c("onnxruntime", 640, 8, 900.0, overhead_fraction=0.15, pct_of_peak=30.0),
        _c("ultralytics-onnx", 640, 1, 200.0, overhead_fraction=0.02, pct_of_peak=90.0),
    ]
    http = [{"input": "multipart", "concurrency": 1, "latency": summarize([100.0])}]
    t = evaluate_targets(cells, http, {"input_size": [640, 640], "backend": "openvino"})
    assert t["overhead_at_640"]["value"] == pytest.approx(0.15) and t["overhead_at_640"]["met"] is False
    assert t["pct_of_gemm_peak_batch1"]["value"] == pytest.approx(60.0)  # the baseline's 90% does not count
    assert t["pct_of_gemm_peak_batch1"]["met"] is True
    assert t["http_vs_ultralytics"]["value"] == pytest.approx(0.5) and t["http_vs_ultralytics"]["met"] is True


def test_targets_not_measured_without_data() -> None:
    t = evaluate_targets([], [], {})
    assert all(v["met"] is None for v in t.values())


def test_in_call_overhead_is_the_median_share_outside_inference() -> None:
    samples = Samples(end_to_end=[100.0, 200.0, 50.0], inference_in_call=[90.0, 150.0, 45.0])
    assert in_call_overhead(samples) == pytest.approx(0.10)  # shares 0.10, 0.25, 0.10
    assert in_call_overhead(Samples()) is None


def test_interleave_in_settled_blocks() -> None:
    order: list[str] = []

    budget = Budget(warmup=0, min_iters=4, max_iters=4, max_seconds=60, block=2, settle=True)
    samples, errors = interleave({"a": recording(order, "a"), "b": recording(order, "b")}, budget)
    assert not errors
    # Each turn: one untimed settling call, then a block of 2 timed calls; the starting runner rotates.
    assert order == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert len(samples["a"].end_to_end) == len(samples["b"].end_to_end) == 4
