"""Shadow scoring's series through Ray's metrics, so a fleet's agreement is one Prometheus query.

Under Ray Serve each replica runs the whole app, shadow included (api/monitoring/shadow.py): it samples its own share
of the
traffic and keeps its own `detector_shadow_*` counters in its own registry. `/metrics` through Ray's proxy returns
one replica's registry (whichever answered), so those counters never meet there. Ray's own metrics do: a
`ray.serve.metrics` series recorded in a replica is tagged with the deployment and replica and exported by each
node's metrics agent, which Prometheus scrapes. This mirror copies the shadow counters there (as increments since
the last copy) and the confidence-shift sum (a gauge per replica); the replica's health check, which Ray calls
every `health_check_period_s`, runs it. Summed over replicas:

    match rate = 2 * sum(matched) / (sum(reference) + sum(candidate))

over the `kind` tag of `detector_shadow_boxes` (Ray's exporter prefixes its custom series with `ray_`).

Only counters and sums are mirrored: they add up across replicas, where a per-replica rate or p50 would not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry

PREFIX = "detector_shadow_"


class RayCounter(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...


class RayGauge(Protocol):
    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...


# (name, description, tag keys) -> a Ray metric; `ray.serve.metrics.Counter` / `.Gauge` in a replica.
CounterFactory = Callable[[str, str, tuple[str, ...]], RayCounter]
GaugeFactory = Callable[[str, str, tuple[str, ...]], RayGauge]


def _ray_counter(name: str, description: str, tag_keys: tuple[str, ...]) -> RayCounter:
    from ray.serve.metrics import Counter

    counter: RayCounter = Counter(name, description, tag_keys=tag_keys)
    return counter


def _ray_gauge(name: str, description: str, tag_keys: tuple[str, ...]) -> RayGauge:
    from ray.serve.metrics import Gauge

    gauge: RayGauge = Gauge(name, description, tag_keys=tag_keys)
    return gauge


class ShadowMetricsMirror:
    """Copies the app registry's `detector_shadow_*` counters and gauges into Ray metrics on each `sync()`."""

    def __init__(
        self, registry: CollectorRegistry, counter: CounterFactory = _ray_counter, gauge: GaugeFactory = _ray_gauge
    ) -> None:
        self.registry = registry
        self._make_counter, self._make_gauge = counter, gauge
        self._counters: dict[str, RayCounter] = {}
        self._gauges: dict[str, RayGauge] = {}
        self._copied: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauge_tags: dict[str, list[dict[str, str]]] = {}  # label sets set last time, per gauge

    def sync(self) -> None:
        seen: dict[str, list[dict[str, str]]] = {}
        for family in self.registry.collect():
            if not family.name.startswith(PREFIX) or family.type not in ("counter", "gauge"):
                continue
            for sample in family.samples:
                if family.type == "counter" and not sample.name.endswith("_total"):
                    continue  # `_created` timestamps
                # Counters under the family's name (no `_total`: the exporter adds its own suffix).
                self._copy(family.type, family.documentation, family.name, sample.labels, sample.value)
                if family.type == "gauge":
                    seen.setdefault(sample.name, []).append(dict(sample.labels))
        # A gauge label set the app cleared (detector_shadow_status{status="loading"} once running) reads 0.
        for name, tag_sets in self._gauge_tags.items():
            for tags in tag_sets:
                if tags not in seen.get(name, []):
                    self._gauges[name].set(0.0, tags=tags)
        self._gauge_tags = seen

    def _copy(self, kind: str, doc: str, name: str, labels: dict[str, str], value: float) -> None:
        tags = dict(labels)
        keys = tuple(sorted(tags))
        if kind == "gauge":
            if name not in self._gauges:
                self._gauges[name] = self._make_gauge(name, doc, keys)
            self._gauges[name].set(value, tags=tags)
            return
        series = (name, tuple(sorted(tags.items())))
        delta = value - self._copied.get(series, 0.0)
        if delta <= 0:
            return
        if name not in self._counters:
            self._counters[name] = self._make_counter(name, doc, keys)
        self._counters[name].inc(delta, tags=tags)
        self._copied[series] = value
