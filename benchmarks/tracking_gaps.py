"""`python -m benchmarks.tracking_gaps`: how well tracks survive the frames a live stream drops.

`detector predict URL --track` reads a stream newest-first (detector/runtime/live.py): the frames that come while the
detector is busy are dropped, a few or many as the load goes, and the tracker sees the rest with gaps between them.
This replays that on a clip, with no clock involved: every frame is detected once; the tracker run on all of them is
the reference; then the frames are kept with random gaps of 1 to G frames and tracked twice, the tracker told each
frame's number (what the live loop does: the tracks are predicted over the frames skipped) and told nothing (one
frame a call: how it tracked before, and how Ultralytics' `BYTETracker` steps whatever the stream dropped). On the
boxes the reference gave an id, counted against it: extra ids (a reference track split into several: an object
that lost its id) and boxes left without one. The same detections go to both, so only the tracking differs.

    python -m benchmarks.tracking_gaps --model models/model.onnx --clip clip.mp4 [--gaps 2,3,4,6] [--seeds 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np

from detector.runtime.detections import Detections
from detector.runtime.tracking import Tracker

Ids = list[list[int | None]]


def detect_clip(model: Path, clip: Path, backend: str = "openvino", batch: int = 16) -> tuple[list[Detections], float]:
    """Every frame of `clip` detected with `model`; and the clip's frame rate."""
    from detector.runtime.detector import Detector

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        frames = [np.asarray(frame.to_ndarray(format="rgb24"), np.uint8) for frame in container.decode(stream)]
    with Detector.load(model, backend) as det:
        found: list[Detections] = []
        for i in range(0, len(frames), batch):
            found += det.predict_batch(frames[i : i + batch])
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


def measure(detections: list[Detections], fps: float, gaps: list[int], seeds: int) -> list[dict[str, Any]]:
    """One row per largest gap: each way's counts, summed over `seeds` draws of the frames kept."""
    reference = list(track(detections, list(range(len(detections))), fps, numbered=False).values())
    rows = []
    for gap in gaps:
        sums = {way: collections.Counter[str]() for way in ("numbered", "one_a_call")}
        for seed in range(seeds):
            frames = kept_frames(len(detections), gap, seed)
            for way in sums:
                sums[way].update(against(reference, track(detections, frames, fps, numbered=way == "numbered")))
        rows.append({"largest_gap": gap, **{way: dict(counts) for way, counts in sums.items()}})
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| gaps of 1 to | boxes | extra ids: frame numbers / one a call | boxes without an id: numbers / one a call |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        n, o = r["numbered"], r["one_a_call"]
        lines.append(
            f"| {r['largest_gap']} | {n['boxes']} | **{n['extra_ids']}** / {o['extra_ids']} |"
            f" **{n['untracked']}** / {o['untracked']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a manual benchmark; tests run `measure`
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracking_gaps", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--gaps", default="2,3,4,6", help="largest gaps to draw, comma-separated")
    parser.add_argument("--seeds", type=int, default=5, help="draws of the frames kept, per largest gap")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    detections, fps = detect_clip(args.model, args.clip, args.backend)
    rows = measure(detections, fps, [int(g) for g in args.gaps.split(",")], args.seeds)
    report = {"model": str(args.model), "clip": str(args.clip), "frames": len(detections), "fps": fps, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.clip}: {len(detections)} frames, {sum(len(d) for d in detections)} boxes, model {args.model}")
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
