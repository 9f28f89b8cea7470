"""Drift of live traffic against the served model's reference profile, exported to Prometheus.

A rolling window of the last `window` images' statistics (`detector.runtime.drift`): each `/predict` adds its
image's bin indices and the oldest image's are subtracted, so the window's histograms are exact and an observation
costs a few microseconds (brightness and contrast come from a strided sample, not a pass over the pixels). PSI per
statistic is computed only when `/metrics` is scraped. Below `min_images` in the window the PSI gauges are NaN: a
handful of images would make any traffic look shifted (and a NaN never trips an alert).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from api.monitoring.metrics import Metrics
from detector.runtime import Detections
from detector.runtime.drift import STATISTICS, Histograms, Observation, observe

log = logging.getLogger("api")
OUTLIER_STATS = ("brightness", "contrast", "image_pixels")  # per-image statistics an inbox image may be rare in


class DriftMonitor:
    def __init__(self, metrics: Metrics, window: int, min_images: int, enabled: bool = True) -> None:
        self.metrics = metrics
        self.window = window
        self.min_images = min_images
        self.enabled = enabled
        self._lock = threading.Lock()
        self._reference: Histograms | None = None
        self._reference_shares: dict[str, list[float]] = {}  # per-image statistics, for `outliers`
        self._live: Histograms | None = None
        self._recent: deque[Observation] = deque()
        metrics.before_collect.append(self.refresh)

    @property
    def active(self) -> bool:
        return self.enabled and self._reference is not None

    def set_reference(self, profile: dict[str, Any] | None, model: str) -> None:
        """The newly served model's profile (None or {}: the model has none, drift is off); the window restarts."""
        reference = None
        if self.enabled and profile:
            try:
                reference = Histograms.from_dict(profile)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("model %s: reference profile unusable, drift monitoring off: %s", model, exc)
        elif self.enabled:
            log.info("model %s carries no reference profile: drift monitoring off for it", model)
        with self._lock:
            self._reference = reference
            self._reference_shares = {s: reference.shares(s).tolist() for s in OUTLIER_STATS} if reference else {}
            self._live = Histograms(reference.class_names) if reference else None
            self._recent.clear()
        self.metrics.drift_psi.clear()
        self.metrics.drift_share.clear()

    def observe(
        self, pixels: npt.NDArray[np.uint8], size: tuple[int, int], detections: Detections
    ) -> Observation | None:
        """Add this image to the window; its observation (None when drift is off), for `outliers`."""
        if not self.active:
            return None
        obs = observe(pixels, size, detections)
        with self._lock:
            if self._live is None:
                return None
            self._live.add(obs)
            self._recent.append(obs)
            if len(self._recent) > self.window:
                self._live.remove(self._recent.popleft())
        return obs

    def outliers(self, obs: Observation | None, share: float) -> list[str]:
        """The image statistics (brightness, contrast, size) of `obs` that fall in a bin holding less than `share`
        of the reference profile's images: what the model was rarely or never shown (the inbox keeps such images)."""
        shares = self._reference_shares
        if obs is None or not shares or share <= 0:
            return []
        return [stat for stat in OUTLIER_STATS if obs.bins[stat] and shares[stat][obs.bins[stat][0]] < share]

    def summary(self) -> dict[str, Any]:
        """PSI per statistic (None below `min_images`) and the window's size."""
        with self._lock:
            ref, live = self._reference, self._live
            if ref is None or live is None:
                return {"active": False, "images": 0, "psi": {}}
            enough = live.images >= self.min_images
            values = {s: (live.psi(ref, s) if enough else None) for s in STATISTICS}
            shares = {s: (ref.shares(s), live.shares(s)) for s in STATISTICS}
            return {"active": True, "images": live.images, "psi": values, "_shares": shares}

    def refresh(self) -> None:
        """Set the gauges from the window (called by the /metrics route before it renders)."""
        state = self.summary()
        self.metrics.drift_images.set(state["images"])
        if not state["active"]:
            return
        for stat, value in state["psi"].items():
            self.metrics.drift_psi.labels(statistic=stat).set(math.nan if value is None else value)
        for stat, (ref, live) in state["_shares"].items():
            for i, (r, c) in enumerate(zip(ref.tolist(), live.tolist(), strict=True)):
                self.metrics.drift_share.labels(statistic=stat, bin=str(i), source="reference").set(r)
                self.metrics.drift_share.labels(statistic=stat, bin=str(i), source="live").set(c)
