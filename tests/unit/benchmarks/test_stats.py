"""Latency statistics: percentiles, throughput, ratios, overhead, and the time-bounded loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks.stats import Budget, measure, overhead_fraction, ratio, summarize


def test_percentiles_of_known_samples() -> None:
    s = summarize([float(v) for v in range(1, 101)])  # 1..100 ms
    assert s["n"] == 100
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert (s["min_ms"], s["max_ms"]) == (1.0, 100.0)


def test_percentiles_match_numpy_and_ignore_order() -> None:
    rng = np.random.default_rng(1)
    samples = list(rng.gamma(2.0, 10.0, size=37))
    s = summarize(samples[::-1])
    assert s["p90_ms"] == pytest.approx(float(np.percentile(samples, 90)), abs=1e-3)


def test_throughput_and_per_item_use_the_batch() -> None:
    s = summarize([100.0, 100.0, 100.0], items_per_call=8)
    assert s["per_item_p50_ms"] == pytest.approx(12.5)
    assert s["throughput_per_s"] == pytest.approx(80.0)  # 8 images per 100 ms


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [-1.0]])
def test_summarize_rejects_unusable_samples(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(bad)


def test_ratio_is_a_speedup_and_none_when_missing() -> None:
    assert ratio(200.0, 50.0) == pytest.approx(4.0)  # 4x faster than the baseline
    assert ratio(50.0, 200.0) == pytest.approx(0.25)
    assert ratio(None, 1.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_overhead_fraction() -> None:
    assert overhead_fraction(100.0, 90.0) == pytest.approx(0.10)
    assert overhead_fraction(100.0, 120.0) == 0.0  # medians crossed by noise: no measurable overhead
    assert overhead_fraction(None, 1.0) is None


def test_measure_respects_iteration_bounds() -> None:
    calls = itertools.count()
    samples = measure(lambda: next(calls), Budget(warmup=2, min_iters=3, max_iters=7, max_seconds=60))
    assert len(samples) == 7
    assert next(calls) == 9  # 2 warm-up + 7 timed
    assert all(s >= 0 for s in samples)


def test_measure_stops_on_time_after_min_iters() -> None:
    import time

    samples = measure(lambda: time.sleep(0.02), Budget(warmup=0, min_iters=2, max_iters=1000, max_seconds=0.05))
    assert 2 <= len(samples) <= 5
    assert min(samples) >= 15.0


def test_budget_validates() -> None:
    with pytest.raises(ValueError):
        Budget(min_iters=5, max_iters=2)
