"""Active-learning inbox (`inference.inbox`): images the model is unsure of, kept for review and re-labelling.

A `/predict` image is kept when one of its boxes has a confidence inside `conf_band`, when the shadow challenger
disagreed on it (`shadow_disagreement`, api/monitoring/shadow.py), or when its brightness, contrast or size is rare in
the
model's reference profile (`drift_outlier_share`, api/monitoring/drift.py); then `sample` of those. What is written, per
image, into `dir`:

- `images/<id>.<ext>`: the bytes exactly as the client sent them (no re-encoding);
- `labels/<id>.txt`: the served model's boxes (all classes, the request's thresholds) as YOLO pre-labels;
- one line of `inbox.jsonl`: id, time, why it was kept, the model version, size and the boxes with confidences;
- `classes.txt`: the served model's class names, so that the folder is a YOLO source as it stands:
  `detector data import --format yolo --source inbox --base v2 --version v3` after review.

Never on the request path: `offer` draws, copies nothing, and puts the item on a bounded queue (skipped when
full); one thread writes. The folder never holds more than `max_mb` or `max_files` images: what would pass either
is skipped, counted and logged once until room is made. A write error (a full disk, a read-only folder) is a logged
warning and a counter, never a client's error. The bytes already in the folder are counted at start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from api.monitoring.metrics import Metrics
from detector.config import InboxConfig
from detector.data.yolo_format import Label
from detector.runtime import Detections

log = logging.getLogger("api")

JOURNAL = "inbox.jsonl"
RECOUNT_S = 30.0  # while full, the folder is counted again at most this often (it may have been emptied)
CLASSES = "classes.txt"
# The file name an image keeps, from its first bytes: the formats the decoder accepts (detector.runtime.images).
_SIGNATURES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"BM", ".bmp"))


def image_suffix(data: bytes) -> str | None:
    for magic, suffix in _SIGNATURES:
        if data.startswith(magic):
            return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def uncertain(detections: Detections, band: tuple[float, float]) -> bool:
    """A box whose confidence is in [low, high)."""
    low, high = band
    conf = detections.confidence
    return bool(len(conf)) and bool(np.any((conf >= low) & (conf < high)))


def yolo_labels(detections: Detections, size: tuple[int, int]) -> list[Label]:
    """The boxes (pixels of a (height, width) image) as normalised YOLO labels, clipped to the image."""
    height, width = size
    xyxy = np.clip(detections.xyxy.astype(np.float64), 0, [width, height, width, height])
    labels = []
    for (x0, y0, x1, y1), cls in zip(xyxy.tolist(), detections.class_id.tolist(), strict=True):
        if x1 > x0 and y1 > y0:
            labels.append(
                Label(int(cls), (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
            )
    return labels


class _OtherClasses(Exception):
    """The inbox's classes.txt names other classes than the served model's."""


@dataclass(frozen=True)
class _Item:
    data: bytes
    suffix: str
    size: tuple[int, int]  # (height, width) of the image as sent: the boxes' space
    detections: Detections
    names: dict[int, str]
    model: str
    reasons: tuple[str, ...]


class Inbox:
    """`offer` runs on the event loop (or the shadow thread); files are written by one thread of its own."""

    def __init__(self, settings: InboxConfig, metrics: Metrics, draw: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.root = Path(settings.dir)
        self.metrics = metrics
        self.draw = draw
        self.max_bytes = int(settings.max_mb * 1024 * 1024)
        self.bytes = 0
        self.files = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=settings.queue)
        self._thread: threading.Thread | None = None
        self._full_logged = False  # "inbox full" is logged once until an image fits again
        self._counted_at = 0.0
        self._classes: bytes | None = None  # classes.txt as written or found, once checked
        self._journal: int | None = None  # inbox.jsonl's descriptor, opened at the first line

    # -- request side ---------------------------------------------------------------------------------------------

    def reasons(self, detections: Detections, drift_outliers: Iterable[str] = ()) -> list[str]:
        """Why this answer is worth keeping (empty: it is not)."""
        if not self.enabled:
            return []
        found = ["uncertain"] if uncertain(detections, self.settings.conf_band) else []
        return found + [f"drift:{stat}" for stat in drift_outliers]

    def offer(
        self,
        data: bytes,
        size: tuple[int, int],
        detections: Detections,
        model: dict[str, object],
        reasons: Iterable[str],
    ) -> None:
        """Maybe keep this image. Never blocks, never raises. `detections`: in pixels of the image as sent."""
        why = tuple(reasons)
        try:
            if not self.enabled or not why or self.draw() >= self.settings.sample:
                return
            suffix = image_suffix(data)
            if suffix is None:  # cannot happen for a decoded image; a record without its image would be useless
                return
            raw_names = model.get("names", {})
            names = {int(k): str(v) for k, v in raw_names.items()} if isinstance(raw_names, dict) else {}
            item = _Item(data, suffix, size, detections, names, str(model.get("version", "")), why)
            self._queue.put_nowait(item)
        except queue.Full:
            self.metrics.inbox_skipped.labels(cause="queue_full").inc()
        except Exception:  # a bug here must never reach a client
            log.exception("inbox: offering an image failed")

    # -- the writer thread ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._work, name="inbox", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        self._count_existing()
        log.info(
            "inbox %s: %d image(s), %.1f MB of %g MB", self.root, self.files, self.bytes / 2**20, self.settings.max_mb
        )
        while (item := self._queue.get()) is not None:
            try:
                self._write(item)
            except Exception:
                log.exception("inbox: writing an image failed")
                self.metrics.inbox_skipped.labels(cause="error").inc()

    def _count_existing(self) -> None:
        """What the folder holds now: at start, and again while it is full (someone may have emptied it)."""
        self._counted_at = time.monotonic()
        try:
            files = [p for p in self.root.rglob("*") if p.is_file()]
            self.bytes = sum(p.stat().st_size for p in files)
            self.files = sum(1 for p in files if p.parent == self.root / "images" and not p.name.startswith("."))
        except OSError as exc:
            log.warning("inbox %s: cannot count what it holds (%s); counting from zero", self.root, exc)
        self.metrics.inbox_bytes.set(self.bytes)

    def _full(self, needed: int) -> bool:
        over = self.bytes + needed > self.max_bytes or self.files >= self.settings.max_files
        if over and time.monotonic() - self._counted_at > RECOUNT_S:
            self._count_existing()
            over = self.bytes + needed > self.max_bytes or self.files >= self.settings.max_files
        return over

    def _write(self, item: _Item) -> None:
        ident = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        label = "".join(f"{lb.line()}\n" for lb in yolo_labels(item.detections, item.size)).encode()
        record = (json.dumps(self._record(ident, item), separators=(",", ":")) + "\n").encode()
        classes = "".join(f"{item.names[i]}\n" for i in sorted(item.names)).encode()
        needed = len(item.data) + len(label) + len(record) + (0 if self._classes == classes else len(classes))
        if self._full(needed):
            self._skip_full()
            return
        try:
            try:
                written = self._files_of(ident, item, label, record, classes)
            except FileNotFoundError:  # the first image, or the folder was removed since: make it, once more
                self._classes = None
                written = self._files_of(ident, item, label, record, classes)
        except _OtherClasses:
            self.metrics.inbox_skipped.labels(cause="classes").inc()
            log.warning(
                "inbox %s holds another model's classes (%s): image skipped; empty it first", self.root, CLASSES
            )
            return
        except OSError as exc:
            self.metrics.inbox_skipped.labels(cause="error").inc()
            log.warning(
                "inbox %s: an image could not be written (%s); the request was answered as usual", self.root, exc
            )
            return
        self.bytes += written
        self.files += 1
        self._full_logged = False
        self.metrics.inbox_bytes.set(self.bytes)
        for reason in item.reasons:
            self.metrics.inbox_kept.labels(reason=reason.split(":")[0]).inc()

    def _files_of(self, ident: str, item: _Item, label: bytes, record: bytes, classes: bytes) -> int:
        """Write one image's files; the bytes written. Measured at 1.2 ms an image with a temporary folder, two
        renames and classes.txt read back each time, which slowed a 5 ms /predict by 20 % on a 2-vCPU machine while
        every image was kept; so: the label is written in place (it means nothing until its image appears), the
        image under a dot-name the importer skips, then renamed; classes.txt is checked once."""
        written = 0
        if self._classes is None:  # the first image since start, or since the folder was removed
            for folder in ("images", "labels"):
                (self.root / folder).mkdir(parents=True, exist_ok=True)
            written += self._check_classes(classes)
        elif self._classes != classes:
            raise _OtherClasses
        images = self.root / "images"
        partial = images / f".{ident}{item.suffix}.part"
        try:
            (self.root / "labels" / f"{ident}.txt").write_bytes(label)
            partial.write_bytes(item.data)
            os.replace(partial, images / f"{ident}{item.suffix}")
        except OSError:
            for leftover in (partial, self.root / "labels" / f"{ident}.txt"):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            raise
        self._append_journal(record)
        return written + len(label) + len(item.data) + len(record)

    def _append_journal(self, record: bytes) -> None:
        """One line, through a descriptor kept open (an open() per image was a third of the writer's time); opened
        again when the file was removed or replaced since (someone emptied the inbox)."""
        if self._journal is not None and os.fstat(self._journal).st_nlink == 0:
            os.close(self._journal)
            self._journal = None
        if self._journal is None:
            self._journal = os.open(self.root / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._journal, record)

    def _check_classes(self, classes: bytes) -> int:
        """classes.txt is written with the first image (the bytes written); an image from a model with other classes
        raises _OtherClasses (its labels' ids would mean other things)."""
        path = self.root / CLASSES
        if path.exists():
            if path.read_bytes() != classes:
                raise _OtherClasses
            self._classes = classes
            return 0
        path.write_bytes(classes)
        self._classes = classes
        return len(classes)

    def _skip_full(self) -> None:
        self.metrics.inbox_skipped.labels(cause="full").inc()
        if not self._full_logged:
            self._full_logged = True
            log.warning(
                "inbox %s is full (%d images, %.1f MB; max_files %d, max_mb %g): new images are skipped until it is "
                "emptied (import and remove what was reviewed)",
                self.root,
                self.files,
                self.bytes / 2**20,
                self.settings.max_files,
                self.settings.max_mb,
            )

    @staticmethod
    def _record(ident: str, item: _Item) -> dict[str, object]:
        det = item.detections
        return {
            "id": ident,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "reasons": list(item.reasons),
            "model": item.model,
            "image": f"images/{ident}{item.suffix}",
            "height": item.size[0],
            "width": item.size[1],
            "boxes": [
                {
                    "class_name": item.names.get(int(c), str(c)),
                    "confidence": round(float(s), 4),
                    "xyxy": [round(v, 1) for v in b],
                }
                for b, c, s in zip(det.xyxy.tolist(), det.class_id.tolist(), det.confidence.tolist(), strict=True)
            ],
        }

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (bounded by `queue`), then stop the thread."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("inbox: the writer did not drain its queue in %g s; stopping without it", timeout_s)
            return
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._journal is not None and not self._thread.is_alive():
            os.close(self._journal)
            self._journal = None
