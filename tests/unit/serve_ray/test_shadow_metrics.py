"""The mirror of shadow counters into Ray's metrics: what two replicas record adds up to the fleet's counts."""

from __future__ import annotations

from collections import defaultdict

from api.monitoring.metrics import Metrics
from serve_ray.shadow_metrics import ShadowMetricsMirror

Tags = tuple[tuple[str, str], ...]


class Recorder:
    """Stands in for Ray's metrics agent: sums counter increments and keeps the last gauge value, per series and
    replica (Ray tags every series with the replica that recorded it)."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str, Tags], float] = defaultdict(float)
        self.gauges: dict[tuple[str, str, Tags], float] = {}

    def mirror(self, metrics: Metrics, replica: str) -> ShadowMetricsMirror:
        recorder = self

        class Counter:
            def __init__(self, name: str, _doc: str, _keys: tuple[str, ...]) -> None:
                self.name = name

            def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
                recorder.counters[(self.name, replica, tuple(sorted((tags or {}).items())))] += value

        class Gauge(Counter):
            def set(self, value: float, tags: dict[str, str] | None = None) -> None:
                recorder.gauges[(self.name, replica, tuple(sorted((tags or {}).items())))] = value

        return ShadowMetricsMirror(metrics.registry, counter=Counter, gauge=Gauge)

    def total(self, name: str, **tags: str) -> float:
        want = set(tags.items())
        return sum(v for (n, _, t), v in self.counters.items() if n == name and want <= set(t))


def test_replicas_add_up_and_each_increment_is_copied_once() -> None:
    ray = Recorder()
    a, b = Metrics(), Metrics()
    mirrors = [ray.mirror(a, "a"), ray.mirror(b, "b")]
    a.set_shadow_status("loading")
    b.set_shadow_status("running")
    a.shadow_samples.inc(3)
    a.shadow_boxes.labels(class_name="circle", kind="matched").inc(5)
    b.shadow_samples.inc(2)
    b.shadow_boxes.labels(class_name="circle", kind="matched").inc(1)
    b.shadow_shed.labels(reason="queue_full").inc()
    b.shadow_confidence_shift.inc(-0.25)
    for m in mirrors:
        m.sync()
    a.shadow_samples.inc()
    a.set_shadow_status("running")
    for m in mirrors:
        m.sync()
        m.sync()  # nothing new: nothing copied twice

    assert ray.total("detector_shadow_samples") == 6
    assert ray.total("detector_shadow_boxes", class_name="circle", kind="matched") == 6
    assert ray.total("detector_shadow_shed", reason="queue_full") == 1
    assert ray.gauges[("detector_shadow_confidence_shift_sum", "b", ())] == -0.25
    status = {(replica, dict(t)["status"]): v for (n, replica, t), v in ray.gauges.items() if n.endswith("status")}
    assert status == {("a", "loading"): 0.0, ("a", "running"): 1.0, ("b", "running"): 1.0}
