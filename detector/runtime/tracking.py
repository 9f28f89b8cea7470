"""ByteTrack (Zhang et al., 2022) over successive frames' detections, with every Kalman step done for all tracks at
once.

Why not a library's: `trackers.ByteTrackTracker` (Roboflow; supervision's ByteTrack moved there) keeps one Kalman
filter object per track and steps each in Python. With the 70 boxes a frame of this project's real test clip that
was 1.9 ms a frame alone and 3.3 ms inside the video loop, a fifth of the whole 640 px loop (frames/s with tracking
61-64, without 76-77: INT8 model, 720p clip, AMD EPYC 2 cores), and it ran on the event loop of `POST
/predict/video?track=true`. Ultralytics' `BYTETracker` steps its Kalman filters in batches but matches in Python:
6.6 ms a frame there. Here the tracks' states are rows of one array, so a frame costs a few batched numpy calls
whatever the number of tracks: 0.9-1.6 ms on those frames (0.4-0.8 ms on the other clips).

The algorithm and constants are the reference's (ifzhang/ByteTrack `BYTETracker.update`, `KalmanFilter` in xyah,
which Ultralytics' tracker follows too): high-confidence detections are matched to tracked and lost tracks by IoU
weighted by confidence, low-confidence ones to the tracks still unmatched (recovering occluded objects), and the
rest of the high ones to the tracks born on the frame before, which that confirms. A new track starts from a high
detection no track took; on a stream's first frame it is confirmed at once (`STrack.activate`), later by its next
detection. A lost track is kept `TRACK_BUFFER` frames at 30 fps (scaled to the stream's rate) for a late match.
Where frames were skipped (a live stream's, dropped while the detector was busy), `update` takes the frame's number
and the tracks are predicted over the frames skipped; the reference steps one frame a call whatever the gap
(benchmarks/tracking_gaps.py: 30-50 % fewer lost ids on a clip of moving objects with gaps of 2-6 frames).
Unlike the reference, a track's id is allocated when it is confirmed, so ids count up without gaps. Tracking is
class-agnostic, as in both references.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from detector.runtime.boxes import box_iou
from detector.runtime.detections import Detections

# Ultralytics' defaults (bytetrack.yaml), so `track=true` follows objects as `YOLO.track` does: with these, on the same
# detections (this project's clips, 450 frames), both give ids to the same share of boxes (0.666 / 0.664, 0.879 /
# 0.879) and about as many ids (296 / 299, 194 / 195); tests/unit/detector/runtime/test_tracker.py holds it.
HIGH_THRESHOLD = 0.25  # detections at least this confident take part in the first match and may start tracks
LOW_THRESHOLD = 0.1  # ... above this, the second match (occluded objects, seen with less confidence)
NEW_TRACK_THRESHOLD = 0.25  # an unmatched high detection starts a track when at least this confident
MATCH_COST = 0.8  # first match: 1 - IoU * confidence at most this (the reference's match_thresh)
LOW_MATCH_COST = 0.5  # second match: 1 - IoU at most this
UNCONFIRMED_MATCH_COST = 0.7  # third match, tracks born on the previous frame
DUPLICATE_COST = 0.15  # a tracked and a lost track closer than this (1 - IoU) are one object: the younger goes
TRACK_BUFFER = 30  # frames (at 30 fps) a lost track waits for a match

# The reference Kalman filter: state (cx, cy, aspect, h, and their velocities). Its noise is relative to the
# height but for the aspect ratio's: standard deviation = h * _PER_HEIGHT + _FIXED, per state (or measurement) entry.
_P, _V = 1.0 / 20, 1.0 / 160  # position, velocity
_BIRTH = (np.array([2 * _P, 2 * _P, 0, 2 * _P, 10 * _V, 10 * _V, 0, 10 * _V]), np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0]))
_MOTION_NOISE = (np.array([_P, _P, 0, _P, _V, _V, 0, _V]), np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0]))
_MEASUREMENT_NOISE = (np.array([_P, _P, 0, _P]), np.array([0, 0, 1e-1, 0]))
_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)

_TRACKED, _LOST = 0, 1

Array = npt.NDArray[np.float64]


def _xyah(xyxy: Array) -> Array:
    w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    return np.stack([xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2, w / np.maximum(h, 1e-6), h], axis=1)


def _xyxy(mean: Array) -> Array:
    w, h = mean[:, 2] * mean[:, 3], mean[:, 3]
    return np.stack([mean[:, 0] - w / 2, mean[:, 1] - h / 2, mean[:, 0] + w / 2, mean[:, 1] + h / 2], axis=1)


def _noise(h: Array, kind: tuple[Array, Array]) -> Array:
    """`(N, k, k)` diagonal covariances for heights `h` `(N, 1)`."""
    std = h * kind[0] + kind[1]
    out = np.zeros((*std.shape, std.shape[1]))
    idx = np.arange(std.shape[1])
    out[:, idx, idx] = std**2
    return out


def _match(cost: npt.NDArray[np.floating[Any]], limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost pairs (row, col) with cost <= `limit`, then the unmatched rows and columns."""
    pairs: list[tuple[int, int]] = []
    if cost.size:
        rows, cols = linear_sum_assignment(cost)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= limit]
    taken_rows, taken_cols = {r for r, _ in pairs}, {c for _, c in pairs}
    return (
        pairs,
        [r for r in range(cost.shape[0]) if r not in taken_rows],
        [c for c in range(cost.shape[1]) if c not in taken_cols],
    )


class Tracker:
    """ByteTrack for one stream: `update(detections)` returns one track id (or None) per detection, in order."""

    def __init__(self, frame_rate: float) -> None:
        self.max_lost = max(1, int(frame_rate / 30.0 * TRACK_BUFFER))
        self.frame = 0  # calls so far
        self.position = -1  # the stream's number (0-based) of the last frame tracked
        self._next_id = 1
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.ids = np.zeros(0, np.int64)  # -1: not confirmed yet
        self.state = np.zeros(0, np.int64)
        self.start = np.zeros(0, np.int64)  # frame of birth
        self.seen = np.zeros(0, np.int64)  # frame of the last match

    @property
    def track_count(self) -> int:
        """Tracks kept: tracked, lost and unconfirmed. (Not `__len__`: `if tracker:` must not mean "has tracks".)"""
        return len(self.ids)

    def update(self, detections: Detections, frame: int | None = None) -> list[int | None]:
        """Track ids for `detections`. `frame`: the stream's number of this frame, where frames between the ones
        given here were not detected (a live stream read newest-first drops those that came while the detector was
        busy, a few or many as the load goes): the tracks are then predicted over every frame since the last one,
        not one. None: the frame after the last. A lost track still waits `max_lost` calls, as in the reference
        (evidence that the object is gone, however far apart the frames)."""
        steps = 1 if frame is None else frame - self.position
        if steps < 1:
            raise ValueError(f"frame {frame} is not after the last one tracked ({self.position})")
        self.position += steps
        self.frame += 1
        boxes = detections.xyxy.astype(np.float64).reshape(-1, 4)
        scores = detections.confidence.astype(np.float64)
        out: list[int | None] = [None] * len(boxes)
        high = np.flatnonzero(scores >= HIGH_THRESHOLD)
        low = np.flatnonzero((scores > LOW_THRESHOLD) & (scores < HIGH_THRESHOLD))
        confirmed = self.ids >= 0
        pool = np.flatnonzero(confirmed)  # tracked and lost; unconfirmed tracks keep their birth box
        # Capped: after a gap longer than the lost buffer (a reconnection) no motion is worth predicting further.
        self._predict(pool, min(steps, self.max_lost + 1))
        matched = np.zeros(self.track_count, bool)

        # 1: high detections against every confirmed track, IoU weighted by the detection's confidence
        predicted = _xyxy(self.mean[pool])
        cost: npt.NDArray[np.floating[Any]] = 1.0 - box_iou(predicted, boxes[high]) * scores[high][None, :]
        pairs, rest_tracks, rest_high = _match(cost, MATCH_COST)
        self._take([(pool[t], high[d]) for t, d in pairs], boxes, out, matched)

        # 2: low detections against the confirmed tracks still tracked and unmatched (occlusions)
        rest = np.array([pool[t] for t in rest_tracks if self.state[pool[t]] == _TRACKED], np.int64)
        cost = 1.0 - box_iou(_xyxy(self.mean[rest]), boxes[low])
        pairs, _, _ = _match(cost, LOW_MATCH_COST)
        self._take([(rest[t], low[d]) for t, d in pairs], boxes, out, matched)

        # 3: the remaining high detections against the tracks born on the frame before: a match confirms them
        young = np.flatnonzero(~confirmed)
        high_left = high[rest_high]
        cost = 1.0 - box_iou(_xyxy(self.mean[young]), boxes[high_left]) * scores[high_left][None, :]
        pairs, _, rest_new = _match(cost, UNCONFIRMED_MATCH_COST)
        for t, _ in pairs:
            self.ids[young[t]] = self._allocate()
        self._take([(young[t], high_left[d]) for t, d in pairs], boxes, out, matched)

        # Unmatched confirmed tracks are lost; unmatched young ones and long-lost ones go.
        self.state[confirmed & ~matched] = _LOST
        keep = (confirmed | matched) & (self.frame - self.seen <= self.max_lost)
        self._keep(keep & ~self._duplicates())

        # New tracks from the high detections nobody took
        born = np.array([d for d in high_left[rest_new] if scores[d] >= NEW_TRACK_THRESHOLD], np.int64)
        self._start(born, boxes, out)
        return out

    def _allocate(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _predict(self, rows: npt.NDArray[np.int64], steps: int = 1) -> None:
        """`steps` Kalman predictions (one a frame) for `rows` at once; a lost track's height stops changing, as in
        the reference."""
        if not len(rows):
            return
        mean, cov = self.mean[rows], self.cov[rows]
        mean[self.state[rows] != _TRACKED, 7] = 0.0
        for _ in range(steps):
            noise = _noise(mean[:, 3:4], _MOTION_NOISE)
            mean = mean @ _MOTION.T
            cov = _MOTION @ cov @ _MOTION.T + noise
        self.mean[rows], self.cov[rows] = mean, cov

    def _take(
        self, pairs: list[tuple[int, int]], boxes: Array, out: list[int | None], matched: npt.NDArray[np.bool_]
    ) -> None:
        """Kalman-update the tracks of `pairs` (track row, detection index) with their detections, all at once."""
        if not pairs:
            return
        rows = np.array([t for t, _ in pairs], np.int64)
        dets = np.array([d for _, d in pairs], np.int64)
        mean, cov = self.mean[rows], self.cov[rows]
        projected_cov = cov[:, :4, :4] + _noise(mean[:, 3:4], _MEASUREMENT_NOISE)
        gain = np.linalg.solve(projected_cov, cov[:, :4, :]).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
        innovation = _xyah(boxes[dets]) - mean[:, :4]
        self.mean[rows] = mean + np.einsum("nij,nj->ni", gain, innovation)
        self.cov[rows] = cov - gain @ projected_cov @ gain.transpose(0, 2, 1)
        self.state[rows] = _TRACKED
        self.seen[rows] = self.frame
        matched[rows] = True
        for row, det in zip(rows, dets, strict=True):
            out[int(det)] = int(self.ids[row]) if self.ids[row] >= 0 else None

    def _duplicates(self) -> npt.NDArray[np.bool_]:
        """Rows of a tracked and a lost track over the same object: of each such pair, the one followed for fewer
        frames (the reference's `remove_duplicate_stracks`)."""
        drop = np.zeros(self.track_count, bool)
        tracked = np.flatnonzero(self.state == _TRACKED)
        lost = np.flatnonzero(self.state == _LOST)
        if not len(tracked) or not len(lost):
            return drop
        boxes = _xyxy(self.mean)
        for t, lo in zip(*np.nonzero(1.0 - box_iou(boxes[tracked], boxes[lost]) < DUPLICATE_COST), strict=True):
            a, b = tracked[t], lost[lo]
            drop[b if self.seen[a] - self.start[a] > self.seen[b] - self.start[b] else a] = True
        return drop

    def _keep(self, rows: npt.NDArray[np.bool_]) -> None:
        self.mean, self.cov, self.ids = self.mean[rows], self.cov[rows], self.ids[rows]
        self.state, self.start, self.seen = self.state[rows], self.start[rows], self.seen[rows]

    def _start(self, dets: npt.NDArray[np.int64], boxes: Array, out: list[int | None]) -> None:
        """New tracks at `dets`; on the stream's first frame confirmed at once (the reference's `activate`)."""
        if not len(dets):
            return
        xyah = _xyah(boxes[dets])
        ids = np.full(len(dets), -1, np.int64)
        if self.frame == 1:
            ids = np.array([self._allocate() for _ in dets], np.int64)
            for det, track_id in zip(dets, ids, strict=True):
                out[int(det)] = int(track_id)
        n = len(dets)
        self.mean = np.concatenate([self.mean, np.concatenate([xyah, np.zeros((n, 4))], axis=1)])
        self.cov = np.concatenate([self.cov, _noise(xyah[:, 3:4], _BIRTH)])
        self.ids = np.concatenate([self.ids, ids])
        self.state = np.concatenate([self.state, np.full(n, _TRACKED, np.int64)])
        self.start = np.concatenate([self.start, np.full(n, self.frame, np.int64)])
        self.seen = np.concatenate([self.seen, np.full(n, self.frame, np.int64)])
