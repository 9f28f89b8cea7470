"""api.monitoring.inbox.Inbox without a server: what it writes (the bytes as sent, YOLO pre-labels the importer reads
back, a journal line), and what it refuses to do (grow past its caps, block or raise on a full queue or a broken disk,
mix two models' classes)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from api.monitoring.inbox import Inbox, image_suffix, uncertain, yolo_labels
from api.monitoring.metrics import Metrics
from detector.config import InboxConfig
from detector.data.importers.yolo import read_yolo
from detector.runtime import Detections

NAMES = {0: "circle", 1: "square"}
MODEL: dict[str, Any] = {"version": "7", "names": {"0": "circle", "1": "square"}}


def jpeg(width: int = 64, height: int = 48, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (value, value, value)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def noise_png(side: int, seed: int) -> bytes:
    """A PNG that does not compress: its size is about side * side * 3 bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def dets(*boxes: tuple[float, float, float, float, float, int]) -> Detections:
    if not boxes:
        return Detections.empty(NAMES)
    arr = np.array(boxes, np.float64)
    return Detections(arr[:, :4].astype(np.float32), arr[:, 4].astype(np.float32), arr[:, 5].astype(np.int64), NAMES)


def inbox(tmp_path: Path, start: bool = True, **settings: Any) -> Inbox:
    box = Inbox(InboxConfig(enabled=True, dir=str(tmp_path / "inbox"), **settings), Metrics())
    if start:
        box.start()
    return box


def metric(box: Inbox, name: str, **labels: str) -> float:
    value = box.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def settle(until: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_suffix_band_and_labels() -> None:
    assert image_suffix(jpeg()) == ".jpg" and image_suffix(noise_png(4, 0)) == ".png"
    assert image_suffix(b"RIFF\0\0\0\0WEBPVP8 ") == ".webp" and image_suffix(b"GIF89a") is None
    assert uncertain(dets((0, 0, 1, 1, 0.3, 0)), (0.25, 0.5))
    assert not uncertain(dets((0, 0, 1, 1, 0.5, 0), (0, 0, 1, 1, 0.2, 0)), (0.25, 0.5))  # high end excluded
    assert not uncertain(dets(), (0.0, 1.0))
    # A box partly outside the image is clipped to it; one wholly outside is dropped.
    labels = yolo_labels(dets((-10, 12, 30, 36, 0.9, 1), (70, 0, 80, 10, 0.9, 0)), (48, 64))
    assert len(labels) == 1 and labels[0].cls == 1
    assert np.allclose(labels[0].xyxy(64, 48), (0, 12, 30, 36))


def test_writes_the_image_as_sent_with_pre_labels_the_importer_reads(tmp_path: Path) -> None:
    box = inbox(tmp_path)
    data = jpeg()
    detections = dets((8, 6, 40, 30, 0.3, 1), (10, 10, 20, 20, 0.9, 0))
    box.offer(data, (48, 64), detections, MODEL, box.reasons(detections, ["brightness"]))
    box.close()
    root = tmp_path / "inbox"
    (image,) = (root / "images").iterdir()
    assert image.read_bytes() == data and image.suffix == ".jpg"
    (record,) = [json.loads(line) for line in (root / "inbox.jsonl").read_text().splitlines()]
    assert record["reasons"] == ["uncertain", "drift:brightness"] and record["model"] == "7"
    assert record["image"] == f"images/{image.name}" and (record["width"], record["height"]) == (64, 48)
    assert [b["class_name"] for b in record["boxes"]] == ["square", "circle"]
    assert (root / "classes.txt").read_text() == "circle\nsquare\n"
    assert not list((root / "images").glob(".*"))  # no partial image left
    # The folder is a YOLO source as it stands: the importer reads the boxes back (pixels within rounding).
    source = read_yolo(root)
    assert source.problems == [] and source.classes == ["circle", "square"]
    (im,) = source.images
    got = sorted(
        (b.cls, round(b.cx * 64, 3), round(b.cy * 48, 3), round(b.w * 64, 3), round(b.h * 48, 3)) for b in im.boxes
    )
    assert got == [("circle", 15.0, 15.0, 10.0, 10.0), ("square", 24.0, 18.0, 32.0, 24.0)]
    assert metric(box, "detector_inbox_kept_total", reason="uncertain") == 1
    assert metric(box, "detector_inbox_kept_total", reason="drift") == 1
    assert metric(box, "detector_inbox_bytes") == folder_bytes(root)


def test_nothing_kept_without_a_reason_off_or_unsampled(tmp_path: Path) -> None:
    sure = dets((0, 0, 10, 10, 0.9, 0))
    box = inbox(tmp_path / "a")
    box.offer(jpeg(), (48, 64), sure, MODEL, box.reasons(sure))
    box.close()
    off = Inbox(InboxConfig(dir=str(tmp_path / "b")), Metrics())
    off.start()
    assert off.reasons(dets((0, 0, 10, 10, 0.3, 0)), ["brightness"]) == []
    unsampled = inbox(tmp_path / "c", sample=0.0)
    unsampled.offer(jpeg(), (48, 64), sure, MODEL, ["uncertain"])
    unsampled.close()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_never_grows_past_its_byte_cap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cap_mb = 0.05  # about 52 KB: five 10 KB images fit, not six
    box = inbox(tmp_path, max_mb=cap_mb, queue=64)
    images = [noise_png(58, seed) for seed in range(12)]
    with caplog.at_level(logging.WARNING, logger="api"):
        for data in images:
            box.offer(data, (58, 58), dets((0, 0, 5, 5, 0.3, 0)), MODEL, ["uncertain"])
        box.close()
    root = tmp_path / "inbox"
    kept = len(list((root / "images").iterdir()))
    assert 0 < kept < len(images)
    assert folder_bytes(root) <= cap_mb * 2**20
    assert metric(box, "detector_inbox_skipped_total", cause="full") == len(images) - kept
    assert sum("is full" in r.message for r in caplog.records) == 1  # logged once, not per image


def test_never_holds_more_than_max_files_and_counts_what_it_found(tmp_path: Path) -> None:
    box = inbox(tmp_path, max_files=2)
    for _ in range(4):
        box.offer(jpeg(), (48, 64), dets(), MODEL, ["drift:contrast"])
    box.close()
    assert len(list((tmp_path / "inbox" / "images").iterdir())) == 2
    again = inbox(tmp_path, max_files=3)  # a restarted server counts the two already there
    for _ in range(3):
        again.offer(jpeg(), (48, 64), dets(), MODEL, ["drift:contrast"])
    again.close()
    assert len(list((tmp_path / "inbox" / "images").iterdir())) == 3
    assert metric(again, "detector_inbox_skipped_total", cause="full") == 2


def test_a_full_queue_skips_at_once(tmp_path: Path) -> None:
    box = inbox(tmp_path, start=False, queue=2)  # no writer: the queue only fills
    started = time.perf_counter()
    for _ in range(50):
        box.offer(jpeg(), (48, 64), dets(), MODEL, ["uncertain"])
    assert time.perf_counter() - started < 1.0
    assert metric(box, "detector_inbox_skipped_total", cause="queue_full") == 48


def test_a_write_error_is_a_warning_and_the_next_image_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = inbox(tmp_path)
    real_write = Path.write_bytes
    failures = iter([OSError(28, "No space left on device")])

    def write_bytes(self: Path, data: bytes) -> int:  # the first image's write fails as on a full disk
        if self.name.endswith(".part") and (error := next(failures, None)) is not None:
            raise error
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with caplog.at_level(logging.WARNING, logger="api"):
        box.offer(jpeg(value=10), (48, 64), dets(), MODEL, ["uncertain"])
        box.offer(jpeg(value=20), (48, 64), dets(), MODEL, ["uncertain"])
        box.close()
    root = tmp_path / "inbox"
    assert len(list((root / "images").iterdir())) == 1  # no partial image left
    assert len(list((root / "labels").iterdir())) == 1  # nor the failed image's label
    assert len((root / "inbox.jsonl").read_text().splitlines()) == 1
    assert metric(box, "detector_inbox_skipped_total", cause="error") == 1
    assert any("No space left" in r.message for r in caplog.records)


def test_an_unwritable_folder_never_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    box = Inbox(InboxConfig(enabled=True, dir=str(tmp_path / "file" / "inbox")), Metrics())
    box.start()
    box.offer(jpeg(), (48, 64), dets(), MODEL, ["uncertain"])
    box.close()
    assert metric(box, "detector_inbox_skipped_total", cause="error") == 1


def test_another_models_classes_are_not_mixed_in(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    (root / "classes.txt").write_text("cat\ndog\n")
    box = inbox(tmp_path)
    box.offer(jpeg(), (48, 64), dets(), MODEL, ["uncertain"])
    box.close()
    assert not list((root / "images").iterdir()) and not list((root / "labels").iterdir())
    assert metric(box, "detector_inbox_skipped_total", cause="classes") == 1


def test_an_inbox_emptied_or_removed_while_serving_fills_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review, import, empty: the running server notices the room (counted again while full) and recreates a
    removed folder with its classes.txt."""
    monkeypatch.setattr("api.monitoring.inbox.RECOUNT_S", 0.0)
    root = tmp_path / "inbox"
    box = inbox(tmp_path, max_files=1)
    box.offer(jpeg(value=10), (48, 64), dets(), MODEL, ["uncertain"])
    box.offer(jpeg(value=20), (48, 64), dets(), MODEL, ["uncertain"])  # full: skipped
    settle(lambda: metric(box, "detector_inbox_skipped_total", cause="full") == 1)
    shutil.rmtree(root)
    box.offer(jpeg(value=30), (48, 64), dets(), MODEL, ["uncertain"])
    box.close()
    (image,) = (root / "images").iterdir()
    assert image.read_bytes() == jpeg(value=30)
    assert (root / "classes.txt").read_text() == "circle\nsquare\n"
    assert len((root / "inbox.jsonl").read_text().splitlines()) == 1
    assert metric(box, "detector_inbox_skipped_total", cause="error") == 0
