"""A live stream's outputs: its recording (`detect_live`'s `save`) and its lines (`detector predict URL --jsonl`),
each one file or, for a camera watched for days, files of a few minutes each (segments) named for when they start,
the oldest deleted beyond a count, as NVRs (Frigate, ffmpeg's segment muxer) keep theirs (`Rotation`)."""

from __future__ import annotations

import glob
import logging
import math
import re
import threading
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
class Segmenting:
    """Where a live run's output goes and how it is cut (`Saving` for its recording; its lines take this as is)."""

    path: Path  # with `segment_s`, what the segments' names are made from
    # 0: one file. Else a new file every `segment_s` seconds of the stream (a recording's begins at the first frame
    # after that time, a key frame), named `<stem>-<its start, UTC, YYYYmmddTHHMMSSZ><suffix>` beside `path`.
    segment_s: float = 0.0
    # With `segment_s`: at most this many segments of this name in the folder (earlier runs' included, so a watcher
    # restarted by systemd still keeps the disk bounded), the oldest deleted when a new one begins. 0: all kept.
    keep: int = 0

    def __post_init__(self) -> None:
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
class Saving(Segmenting):
    """Where and how a live stream is recorded: `path` .mp4, .mkv or .mov (a time for each frame)."""

    def __post_init__(self) -> None:
        check_stamped_path(self.path)
        super().__post_init__()


@dataclass(frozen=True)
class Segment:
    path: Path
    from_s: float  # its first frame's time, on the clock of `LiveFrame.time_s` (the lines' `time_s`)


class Rotation:
    """The files of a `Segmenting` output as the run goes: `due` says when the open one ends (every `segment_s` on a
    grid from the first one's start, so cuts do not drift a frame later each time), `begin` names the next (or the
    one file) and deletes the oldest beyond `keep`. Times are the stream's (`LiveFrame.time_s`)."""

    def __init__(self, target: Segmenting, what: str) -> None:
        self.target = target
        self.what = what  # "recording", "lines": what the log says began
        self.segments: list[Segment] = []  # the files begun, in order (one without segments)
        self._cut_at = 0.0  # one tick early, since float times on the grid can miss it by a hair

    def due(self, t: float) -> bool:
        """The open segment ends before `t`: close it, then `begin` the next."""
        return bool(self.target.segment_s and self.segments and t >= self._cut_at)

    def begin(self, t: float) -> Path:
        """The file that begins at `t`: a new segment's name (its wall-clock start), or the one file's path."""
        target = self.target
        path = target.path
        if target.segment_s:
            path = target.segment_path(time.time(), {s.path for s in self.segments})
        self.segments.append(Segment(path, t))
        if target.segment_s:  # said as it happens: a run of days ends (and lists them) much later
            log.info("%s %s (from %.3f s)", self.what, path, t)
            grid = self.segments[0].from_s - 1e-6
            self._cut_at = grid + (int((t - grid) // target.segment_s) + 1) * target.segment_s
        if target.keep:
            self._prune()
        return path

    def _prune(self) -> None:
        """Delete this name's oldest segments beyond `keep` (the one just begun counts, and is never deleted)."""
        current, keep = self.segments[-1].path, self.target.keep
        older = [path for path in self.target.segments_on_disk() if path != current]
        for path in older[: max(0, len(older) - (keep - 1))]:
            try:
                path.unlink()
                log.info("deleted %s (keep %d)", path, keep)
            except OSError as exc:  # removed meanwhile, or not ours to delete: the run goes on
                log.warning("could not delete the old segment %s: %s", path, exc)

    def kept(self) -> list[Segment]:
        """The segments begun that are still on disk (`keep` deletes the oldest)."""
        return [segment for segment in self.segments if segment.path.exists()]


class LineFiles:
    """A live run's JSON lines in segments (`Rotation`): each line goes to the file open at its time, flushed (read
    while it goes: tail -f). Safe from several cameras' threads."""

    def __init__(self, target: Segmenting) -> None:
        self.rotation = Rotation(target, "lines")
        self._out: Any = None
        self._lock = threading.Lock()

    def write(self, line: str, t: float) -> None:
        with self._lock:
            if self._out is not None and self.rotation.due(t):
                self._out.close()
                self._out = None
            if self._out is None:
                self._out = open(self.rotation.begin(t), "w", encoding="utf-8")  # noqa: SIM115 (closed above, below)
            self._out.write(line)
            self._out.flush()

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None


class LiveRecording:
    """`saving`'s recording (None: none), made on the reading thread: every frame received, whole, with the newest
    boxes (`last`) drawn, at the time it arrived."""

    def __init__(self, saving: Saving | None) -> None:
        if saving is not None:
            # The drawing library's import (scipy under it) held the reading thread 0.23-0.48 s at the first boxes:
            # frames piled up in the socket, then came at once with late arrival times. Made before the stream opens.
            preload_drawing()
        self.last: tuple[Detections, list[int | None] | None] | None = None
        self._rotation = Rotation(saving, "recording") if saving is not None else None
        self._writer: StampedVideoWriter | None = None
        self._written = 0  # frames in the files closed before the open one

    @property
    def segments(self) -> list[Segment]:
        """The files written, in order (one without segments)."""
        return self._rotation.segments if self._rotation is not None else []

    def record(self, pixels: Any, arrived: float) -> None:
        assert self._rotation is not None, "a recording without a Saving"
        if self._writer is not None and self._rotation.due(arrived):
            self._close_writer()
        if self._writer is None:  # the recording's size is its first frame's (upright), as a clip's is
            path = self._rotation.begin(arrived)
            self._writer = StampedVideoWriter(path, pixels.shape[1], pixels.shape[0])
        last = self.last
        # Drawn at the frame's own size, where its boxes are (`fit` may letterbox it after: a size change mid-stream).
        self._writer.write(draw_detections(pixels, *last) if last else pixels, arrived)

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
        return self._rotation.kept() if self._rotation is not None else []

    def close(self) -> None:
        self._close_writer()
