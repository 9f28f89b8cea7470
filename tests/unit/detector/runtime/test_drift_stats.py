from __future__ import annotations

import numpy as np
import pytest

from api.monitoring.drift import DriftMonitor
from api.monitoring.metrics import Metrics
from detector.runtime.detections import Detections
from detector.runtime.drift import EDGES, Histograms, bin_of, bins, luma_stats, observe, psi

NAMES = {0: "cat", 1: "dog"}


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    if not rows:
        return Detections.empty(NAMES)
    a = np.array(rows, dtype=np.float64)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64), NAMES)


def test_bins_clip_out_of_range_values_to_the_end_bins() -> None:
    assert bins("confidence", np.array([-1.0, 0.0, 0.05, 0.999, 1.0, 7.0])) == [0, 0, 0, 9, 9, 9]
    assert bins("boxes_per_image", np.array([0, 1, 4, 1000])) == [0, 1, 3, len(EDGES["boxes_per_image"]) - 2]
    for stat, values in (("brightness", [-5.0, 0.0, 31.9, 32.0, 255.0, 300.0]), ("boxes_per_image", [0, 4, 1000])):
        assert [bin_of(stat, v) for v in values] == bins(stat, np.array(values))  # one rule, two speeds


def test_luma_of_flat_and_striped_images() -> None:
    grey = np.full((480, 640, 3), 100, np.uint8)
    assert luma_stats(grey) == pytest.approx((100.0, 0.0), abs=1e-3)
    halves = np.zeros((480, 640), np.uint8)
    halves[:, 320:] = 255  # grey input; the strided sample sees both halves in equal parts
    mean, std = luma_stats(halves)
    assert mean == pytest.approx(127.5, abs=3) and std == pytest.approx(127.5, abs=3)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    ref = np.array([50, 30, 20])
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, ref * 3) < 0.01  # same shares, more images: only the smoothing differs
    assert 0 < psi(ref, np.array([40, 35, 25])) < psi(ref, np.array([10, 30, 60]))
    assert np.isfinite(psi(np.array([100, 0, 0]), np.array([0, 0, 100])))  # empty bins are smoothed


def test_rolling_window_removes_exactly_what_it_added() -> None:
    hist = Histograms(("cat", "dog"))
    image = np.full((100, 200, 3), 30, np.uint8)
    a = observe(image, (100, 200), dets((0, 0, 10, 20, 0.9, 0), (5, 5, 50, 50, 0.4, 1)))
    b = observe(image, (100, 200), dets((0, 0, 10, 10, 0.7, 1)))
    hist.add(a)
    hist.add(b)
    hist.remove(a)
    alone = Histograms(("cat", "dog"))
    alone.add(b)
    assert hist.images == 1 and all((hist.counts[s] == alone.counts[s]).all() for s in hist.counts)
    assert Histograms.from_dict(alone.to_dict()).counts["class"].tolist() == [0, 1, 0]  # cat, dog, other


def test_a_profile_with_other_bins_is_refused() -> None:
    data = Histograms(("cat",)).to_dict()
    data["counts"]["brightness"] = [0, 1]
    with pytest.raises(ValueError, match="brightness"):
        Histograms.from_dict(data)


def test_monitor_without_a_profile_computes_nothing_and_exports_no_psi() -> None:
    metrics = Metrics()
    monitor = DriftMonitor(metrics, window=3, min_images=2)
    monitor.set_reference(None, "v1")
    monitor.observe(np.zeros((8, 8, 3), np.uint8), (8, 8), dets())
    monitor.refresh()
    assert not monitor.active and monitor.summary()["images"] == 0
    assert metrics.registry.get_sample_value("detector_drift_psi", {"statistic": "brightness"}) is None


def test_monitor_window_is_bounded_and_psi_appears_at_min_images() -> None:
    metrics = Metrics()
    monitor = DriftMonitor(metrics, window=3, min_images=2)
    reference = Histograms(("cat", "dog"))
    bright = np.full((64, 64, 3), 200, np.uint8)
    reference.add(observe(bright, (64, 64), dets((0, 0, 10, 10, 0.9, 0))))
    monitor.set_reference(reference.to_dict(), "v1")
    monitor.observe(bright, (64, 64), dets((0, 0, 10, 10, 0.9, 0)))
    monitor.refresh()
    assert np.isnan(metrics.registry.get_sample_value("detector_drift_psi", {"statistic": "brightness"}) or 0.0)
    for _ in range(5):
        monitor.observe(np.zeros((64, 64, 3), np.uint8), (64, 64), dets((0, 0, 10, 10, 0.9, 0)))
    monitor.refresh()
    assert metrics.registry.get_sample_value("detector_drift_window_images") == 3
    assert (metrics.registry.get_sample_value("detector_drift_psi", {"statistic": "brightness"}) or 0) > 0.25
    class_psi = metrics.registry.get_sample_value("detector_drift_psi", {"statistic": "class"})
    assert class_psi is not None and class_psi < 0.25  # the same class as the reference: only brightness moved


def test_outliers_name_the_image_statistics_rare_in_the_reference() -> None:
    """The inbox keeps an image whose brightness, contrast or size the reference profile (almost) never had."""
    monitor = DriftMonitor(Metrics(), window=10, min_images=1)
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert monitor.outliers(monitor.observe(grey, (64, 64), dets()), 0.01) == []  # no reference: none
    reference = Histograms(("cat", "dog"))
    for _ in range(99):
        reference.add(observe(grey, (64, 64), dets()))
    reference.add(observe(np.zeros((64, 64, 3), np.uint8), (64, 64), dets()))  # 1 % of the reference is black
    monitor.set_reference(reference.to_dict(), "v1")
    assert monitor.outliers(monitor.observe(grey, (64, 64), dets()), 0.01) == []
    black = monitor.observe(np.zeros((64, 64, 3), np.uint8), (64, 64), dets())
    assert monitor.outliers(black, 0.01) == []  # 1 % is not rarer than 1 %
    assert monitor.outliers(black, 0.02) == ["brightness"]
    big = monitor.observe(np.full((2000, 3000, 3), 255, np.uint8), (2000, 3000), dets())
    assert monitor.outliers(big, 0.01) == ["brightness", "image_pixels"]
    assert monitor.outliers(big, 0.0) == []  # 0 turns it off
