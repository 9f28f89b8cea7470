"""Latency statistics and the time-bounded measuring loop every benchmark cell uses.

Machines running this are noisy (2 shared cores, training in the background), so cells report medians and tail
percentiles, and every comparison is a ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long one cell is measured: warm-up calls, then at least `min_iters` and at most `max_iters` timed calls,
    stopping early once `max_seconds` have passed (so a slow cell cannot stall the whole run)."""

    warmup: int = 3
    min_iters: int = 5
    max_iters: int = 200
    max_seconds: float = 3.0
    # Interleaved runners take turns of `block` calls each. `settle` adds one untimed call at the start of every
    # turn: thread pools of the runner that just ran (ONNX Runtime, OpenVINO) keep spinning for a moment after a
    # call and would otherwise slow the next runner's first call, an artefact no single-backend service sees.
    block: int = 1
    settle: bool = False

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_iters < 1 or self.max_iters < self.min_iters or self.max_seconds <= 0:
            raise ValueError(f"invalid budget {self}: need warmup >= 0, 1 <= min_iters <= max_iters, max_seconds > 0")
        if self.block < 1:
            raise ValueError(f"invalid budget {self}: block must be >= 1")


QUICK = Budget(warmup=1, min_iters=2, max_iters=5, max_seconds=0.5)


def measure(fn: Callable[[], object], budget: Budget) -> list[float]:
    """Call `fn` repeatedly under `budget`; return each timed call's latency in milliseconds."""
    for _ in range(budget.warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < budget.max_iters:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= budget.min_iters and time.perf_counter() - start >= budget.max_seconds:
            break
    return samples


def summarize(samples_ms: Sequence[float], items_per_call: int = 1) -> dict[str, float]:
    """p50/p90/p99/mean/min/max in ms, and throughput in items per second (`items_per_call` / mean latency).

    Percentiles interpolate linearly between samples (numpy's default), so with few samples p99 ~ max.
    """
    if len(samples_ms) == 0:
        raise ValueError("no samples to summarize")
    if items_per_call < 1:
        raise ValueError(f"items_per_call must be >= 1, got {items_per_call}")
    arr = np.asarray(samples_ms, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("latency samples must be finite and non-negative")
    p50, p90, p99 = (float(v) for v in np.percentile(arr, [50, 90, 99]))
    mean = float(arr.mean())
    return {
        "n": float(len(arr)),
        "p50_ms": round(p50, 4),
        "p90_ms": round(p90, 4),
        "p99_ms": round(p99, 4),
        "mean_ms": round(mean, 4),
        "min_ms": round(float(arr.min()), 4),
        "max_ms": round(float(arr.max()), 4),
        "per_item_p50_ms": round(p50 / items_per_call, 4),
        "throughput_per_s": round(items_per_call * 1e3 / mean, 3) if mean > 0 else math.inf,
    }


def ratio(baseline: float | None, value: float | None) -> float | None:
    """`baseline / value` (a speed-up: > 1 means `value` is faster); None when either side is missing or zero."""
    if baseline is None or value is None or value <= 0 or baseline <= 0:
        return None
    return round(baseline / value, 4)


def overhead_fraction(end_to_end_ms: float | None, backend_ms: float | None) -> float | None:
    """Share of end-to-end time spent outside the backend call: `(e2e - backend) / e2e`, clipped at 0.

    Medians of two separate loops can cross by noise (backend > e2e); that reads as "no measurable overhead"."""
    if end_to_end_ms is None or backend_ms is None or end_to_end_ms <= 0:
        return None
    return round(max(0.0, (end_to_end_ms - backend_ms) / end_to_end_ms), 4)
