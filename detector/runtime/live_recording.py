"""A live stream's recording (`detect_live`'s `save`): one file, or, for a camera watched for days, files of a few
minutes each (segments) named for when they start, the oldest deleted beyond a count, as NVRs (Frigate, ffmpeg's
segment muxer) keep theirs."""

from __future__ import annotations

import glob
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.errors import InvalidInputError
from detector.runtime.detections import Detections
from detector.runtime.draw import draw_detections
from detector.runtime.draw import preload as preload_drawing
from detector.runtime.video import StampedVideoWriter, check_stamped_path

log = logging.getLogger("detector.runtime.live_recording")
STAMP = "%Y%m%dT%H%M%SZ"  # a segment's start (UTC) in its name: names sort as times do
STAMP_PATTERN = r"\d{8}T\d{6}Z"


@dataclass(frozen=True)
class Saving:
    """Where and how a live stream is recorded."""

    path: Path  # .mp4, .mkv or .mov; with `segment_s`, what the segments' names are made from
    # 0: one file. Else a new file every `segment_s` seconds of the stream (the first frame after that time begins
    # it, a key frame), named `<stem>-<its start, UTC, YYYYmmddTHHMMSSZ><suffix>` beside `path`.
    segment_s: float = 0.0
    # With `segment_s`: at most this many segments of this name in the folder (earlier runs' included, so a watcher
    # restarted by systemd still keeps the disk bounded), the oldest deleted when a new one begins. 0: all kept.
    keep: int = 0

    def __post_init__(self) -> None:
        check_stamped_path(self.path)
        if not math.isfinite(self.segment_s) or (self.segment_s != 0 and self.segment_s < 1):
            raise InvalidInputError(f"segment: at least 1 second, or 0 for one file (got {self.segment_s:g})")
        if self.keep < 0:
            raise InvalidInputError(f"keep: 0 (all) or more segments (got {self.keep})")
        if self.keep and not self.segment_s:
            raise InvalidInputError("keep applies to a recording in segments (segment)")

    def segment_path(self, started: float, taken: set[Path]) -> Path:
        """The name of a segment begun at `started` (`time.time()`), unlike those of `taken` (a clock set back)."""
        stem = f"{self.path.stem}-{time.strftime(STAMP, time.gmtime(started))}"
        path, n = self.path.with_name(stem + self.path.suffix), 1
        while path in taken:
            n += 1
            path = self.path.with_name(f"{stem}-{n}{self.path.suffix}")
        return path

    def segments_on_disk(self) -> list[Path]:
        """This name's segments in the folder, oldest first."""
        pattern = re.compile(rf"{re.escape(self.path.stem)}-({STAMP_PATTERN})(?:-(\d+))?{re.escape(self.path.suffix)}")
        found = []
        for path in self.path.parent.glob(f"{glob.escape(self.path.stem)}-*{glob.escape(self.path.suffix)}"):
            match = pattern.fullmatch(path.name)
            if match:
                found.append((match[1], int(match[2] or 1), path))
        return [path for *_, path in sorted(found)]


@dataclass(frozen=True)
class Segment:
    path: Path
    from_s: float  # its first frame's time, on the clock of `LiveFrame.time_s` (the lines' `time_s`)


class LiveRecording:
    """`saving`'s recording (None: none), made on the reading thread: every frame received, whole, with the newest
    boxes (`last`) drawn, at the time it arrived."""

    def __init__(self, saving: Saving | None) -> None:
        if saving is not None:
            # The drawing library's import (scipy under it) held the reading thread 0.23-0.48 s at the first boxes:
            # frames piled up in the socket, then came at once with late arrival times. Made before the stream opens.
            preload_drawing()
        self.saving = saving
        self.last: tuple[Detections, list[int | None] | None] | None = None
        self.segments: list[Segment] = []  # the files written, in order (one without segments)
        self._writer: StampedVideoWriter | None = None
        self._written = 0  # frames in the files closed before the open one
        # When the next segment begins: every `segment_s` from the first frame (a grid, so cuts do not drift a frame
        # later each time); one tick early, since float times on the grid can miss it by a hair.
        self._cut_at = 0.0

    def record(self, pixels: Any, arrived: float) -> None:
        saving = self.saving
        assert saving is not None
        if self._writer is not None and saving.segment_s and arrived >= self._cut_at:
            self._close_writer()
        if self._writer is None:  # the recording's size is its first frame's (upright), as a clip's is
            self._open(saving, pixels, arrived)
            assert self._writer is not None
        last = self.last
        # Drawn at the frame's own size, where its boxes are (`fit` may letterbox it after: a size change mid-stream).
        self._writer.write(draw_detections(pixels, *last) if last else pixels, arrived)

    def _open(self, saving: Saving, pixels: Any, arrived: float) -> None:
        path = saving.path
        if saving.segment_s:
            path = saving.segment_path(time.time(), {s.path for s in self.segments})
        self._writer = StampedVideoWriter(path, pixels.shape[1], pixels.shape[0])
        self.segments.append(Segment(path, arrived))
        if saving.segment_s:  # said as it happens: a run of days ends (and lists them) much later
            log.info("recording %s (from %.3f s)", path, arrived)
        if saving.segment_s:
            grid = self.segments[0].from_s - 1e-6
            self._cut_at = grid + (int((arrived - grid) // saving.segment_s) + 1) * saving.segment_s
        if saving.keep:
            self._prune(saving)

    def _prune(self, saving: Saving) -> None:
        """Delete this name's oldest segments beyond `keep` (the one just begun counts, and is never deleted)."""
        current = self.segments[-1].path
        older = [path for path in saving.segments_on_disk() if path != current]
        for path in older[: max(0, len(older) - (saving.keep - 1))]:
            try:
                path.unlink()
                log.info("deleted %s (keep %d)", path, saving.keep)
            except OSError as exc:  # removed meanwhile, or not ours to delete: the recording goes on
                log.warning("could not delete the old segment %s: %s", path, exc)

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._written += writer.frames
            writer.close()

    @property
    def written(self) -> int:
        return self._written + (self._writer.frames if self._writer is not None else 0)

    def kept(self) -> list[Segment]:
        """The segments written that are still on disk (`keep` deletes the oldest)."""
        return [segment for segment in self.segments if segment.path.exists()]

    def close(self) -> None:
        self._close_writer()
