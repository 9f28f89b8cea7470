"""`python -m benchmarks.tracking_gaps`: how well tracks survive the frames a live stream drops.

`detector predict URL --track` reads a stream newest-first (detector/runtime/live.py): the frames that come while the
detector is busy are dropped, a few or many as the load goes, and the tracker sees the rest with gaps between them.
This replays that on a clip, with no clock involved: every frame is detected once; the tracker run on all of them is
the reference; then the frames are kept with random gaps of 1 to G frames and tracked twice, the tracker told each
frame's number (what the live loop does: the tracks are predicted over the frames skipped) and told nothing (one
frame a call: how it tracked before), and Ultralytics' own `BYTETracker` (what `YOLO.track` runs on a stream: one
frame a call whatever the stream dropped) on the same frames. On the boxes the reference gave an id, counted against
it: extra ids (a reference track split into several: an object that lost its id) and boxes left without one. The
same detections go to every way, so only the tracking differs.

    python -m benchmarks.tracking_gaps --model models/model.onnx --clip clip.mp4 [--gaps 2,3,4,6] [--seeds 5]
        [--no-ultralytics]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from detector.runtime.detections import Detections
from detector.runtime.tracking import Tracker

Ids = list[list[int | None]]


def detect_clip(model: Path, clip: Path, backend: str = "openvino", batch: int = 16) -> tuple[list[Detections], float]:
    """Every frame of `clip` detected with `model`; and the clip's frame rate."""
    from detector.runtime.detector import Detector
    from detector.runtime.video import DAMAGED, probe_video, read_frames

    fps = probe_video(clip).fps or 30.0
    frames = [frame.pixels for frame in read_frames(clip)]  # upright RGB, as the CLI reads a clip
    whole = [n for n, pixels in enumerate(frames) if pixels is not DAMAGED]  # a damaged one: nothing seen there
    with Detector.load(model, backend) as det:
        found = [Detections.empty(det.metadata.names)] * len(frames)
        for i in range(0, len(whole), batch):
            chunk = whole[i : i + batch]
            for n, answer in zip(chunk, det.predict_batch([frames[n] for n in chunk]), strict=True):
                found[n] = answer
    return found, fps


def kept_frames(count: int, largest_gap: int, seed: int) -> list[int]:
    """Frame numbers 0..count-1 with gaps drawn uniformly from 1..largest_gap."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < count:
        out.append(i)
        i += int(rng.integers(1, largest_gap + 1))
    return out


def track(detections: list[Detections], frames: list[int], fps: float, numbered: bool) -> dict[int, list[int | None]]:
    tracker = Tracker(fps)
    return {f: tracker.update(detections[f], f if numbered else None) for f in frames}


def ultralytics_ids(frames: list[Detections]) -> Ids:
    """Ultralytics' own `BYTETracker`, with its default settings (bytetrack.yaml), on `frames` in order: what
    `YOLO.track` runs on a stream, one call a frame given."""
    from types import SimpleNamespace

    from ultralytics.trackers.byte_tracker import BYTETracker

    args = SimpleNamespace(
        track_high_thresh=0.25,
        track_low_thresh=0.1,
        new_track_thresh=0.25,
        track_buffer=30,
        match_thresh=0.8,
        fuse_score=True,
    )
    tracker = BYTETracker(args)

    class Results(SimpleNamespace):  # the part of Ultralytics' `Boxes` its tracker reads
        def __len__(self) -> int:
            return len(self.conf)

        def __getitem__(self, i: object) -> Results:
            return Results(conf=self.conf[i], xywh=self.xywh[i], cls=self.cls[i], xyxy=self.xyxy[i])

    ids: Ids = []
    for d in frames:
        xyxy = d.xyxy.astype(np.float32)
        xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        rows = tracker.update(Results(conf=d.confidence, xywh=xywh, cls=d.class_id.astype(float), xyxy=xyxy))
        frame_ids: list[int | None] = [None] * len(d)
        for row in rows:  # [x1, y1, x2, y2, track_id, score, cls, index]
            frame_ids[int(row[-1])] = int(row[4])
        ids.append(frame_ids)
    return ids


def against(reference: Ids, got: dict[int, list[int | None]]) -> dict[str, int]:
    """Extra ids (beyond one per reference track) and boxes without an id, on the boxes the reference gave an id."""
    ids: dict[int, set[int]] = collections.defaultdict(set)
    boxes = untracked = 0
    for frame, frame_ids in got.items():
        for ref, mine in zip(reference[frame], frame_ids, strict=True):
            if ref is None:
                continue
            boxes += 1
            if mine is None:
                untracked += 1
            else:
                ids[ref].add(mine)
    return {
        "boxes": boxes,
        "tracks": len(ids),
        "extra_ids": sum(len(v) - 1 for v in ids.values()),
        "untracked": untracked,
    }


def measure(
    detections: list[Detections], fps: float, gaps: list[int], seeds: int, ultralytics: bool = False
) -> list[dict[str, Any]]:
    """One row per largest gap: each way's counts, summed over `seeds` draws of the frames kept; with `ultralytics`,
    Ultralytics' `BYTETracker` on the same frames too."""
    reference = list(track(detections, list(range(len(detections))), fps, numbered=False).values())
    ways = ("numbered", "one_a_call", "ultralytics") if ultralytics else ("numbered", "one_a_call")
    rows = []
    for gap in gaps:
        sums = {way: collections.Counter[str]() for way in ways}
        for seed in range(seeds):
            frames = kept_frames(len(detections), gap, seed)
            for way in sums:
                if way == "ultralytics":
                    got = dict(zip(frames, ultralytics_ids([detections[f] for f in frames]), strict=True))
                else:
                    got = track(detections, frames, fps, numbered=way == "numbered")
                sums[way].update(against(reference, got))
        rows.append({"largest_gap": gap, **{way: dict(counts) for way, counts in sums.items()}})
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    ways = [way for way in ("numbered", "one_a_call", "ultralytics") if rows and way in rows[0]]
    names = " / ".join(
        {"numbered": "frame numbers", "one_a_call": "one a call", "ultralytics": "Ultralytics"}[w] for w in ways
    )
    lines = [f"| gaps of 1 to | boxes | extra ids: {names} | boxes without an id: {names} |", "|---:|---:|---:|---:|"]
    for r in rows:
        extra = " / ".join(str(r[w]["extra_ids"]) for w in ways)
        untracked = " / ".join(str(r[w]["untracked"]) for w in ways)
        lines.append(f"| {r['largest_gap']} | {r['numbered']['boxes']} | {extra} | {untracked} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a manual benchmark; tests run `measure`
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracking_gaps", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--gaps", default="2,3,4,6", help="largest gaps to draw, comma-separated")
    parser.add_argument("--seeds", type=int, default=5, help="draws of the frames kept, per largest gap")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--no-ultralytics", action="store_true", help="without Ultralytics' BYTETracker")
    args = parser.parse_args(argv)
    detections, fps = detect_clip(args.model, args.clip, args.backend)
    gaps = [int(g) for g in args.gaps.split(",")]
    rows = measure(detections, fps, gaps, args.seeds, ultralytics=not args.no_ultralytics)
    report = {"model": str(args.model), "clip": str(args.clip), "frames": len(detections), "fps": fps, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.clip}: {len(detections)} frames, {sum(len(d) for d in detections)} boxes, model {args.model}")
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
