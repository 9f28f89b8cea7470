"""The bound on request bodies being received, separate from the inference queue.

A request holds an upload place only while its body arrives, and a queue place (api/inference/batching.py) only once it
has its bytes. So clients trickling bodies (a slow phone link, or an attacker at 1 byte / 0.5 s) use upload places,
which are many and cheap (`max_uploads`; each is freed after at most `read_timeout_s`), and never the few queue
places that decide whether normal requests are answered. Past `max_uploads`: 503 + Retry-After, at once.

Used from the event loop only (one thread), so a plain counter needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from api.errors import ServiceUnavailableError
from api.monitoring.metrics import Metrics


class UploadGate:
    def __init__(self, limit: int, metrics: Metrics | None = None) -> None:
        self.limit = limit
        self.active = 0
        self.metrics = metrics
        if metrics is not None:
            metrics.uploads.set_function(lambda: float(self.active))

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold an upload place for the `with` block; 503 + Retry-After when all `limit` are taken."""
        if self.active >= self.limit:
            if self.metrics is not None:
                self.metrics.rejected.labels(reason="uploads_full").inc()
            raise ServiceUnavailableError(
                f"server is busy: {self.active} uploads are in progress (limit {self.limit}); "
                "retry after the delay in the Retry-After header"
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class JobGate:
    """At most `limit` long jobs (video streams) at once, each holding its place from its start until its stream
    ends (`take` ... `give_back`, not a `with` block: the place outlives the route function). Beyond: 503 at once."""

    def __init__(self, limit: int, what: str, metrics: Metrics | None = None) -> None:
        self.limit = limit
        self.what = what
        self.active = 0
        self.metrics = metrics

    def has_room(self) -> bool:
        return self.active < self.limit

    def take(self) -> None:
        if self.active >= self.limit:
            if self.metrics is not None:
                self.metrics.rejected.labels(reason=f"{self.what}_full").inc()
            raise ServiceUnavailableError(
                f"server is busy: {self.active} {self.what} jobs are running (limit {self.limit}); "
                "retry after the delay in the Retry-After header"
            )
        self.active += 1

    def give_back(self) -> None:
        self.active -= 1
