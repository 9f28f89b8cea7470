"""`python -m benchmarks.train_threads`: `detector train` on `train.threads=auto` against Ultralytics' thread count.

Ultralytics trains on a CPU with `min(8, CPUs - 1)` threads (one on a 2-core machine); `auto` shares the CPUs between
the trainings running (detector/training/threads.py). Each case runs `detector train` as a user would, in a
throwaway project folder (a copy of configs/, a dataset generated there, MLflow off), timed from the process' start
to its end, in rounds that interleave the cases:

- alone: one training pinned to Ultralytics' count (`train.threads=N`), then one on `auto`;
- two at once: two trainings, the second started `--stagger` seconds after the first, pinned to Ultralytics' count
  (what two Ultralytics trainings do), then both on `auto` (the first starts alone on the whole machine and must
  give way to the second).

    python -m benchmarks.train_threads [--epochs 3] [--imgsz 256] [--images 200] [--rounds 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from detector.training.threads import available_cpus, ultralytics_threads

REPO = Path(__file__).resolve().parents[1]


def _cli(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=workdir,
        env={**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(proc: subprocess.Popen[bytes], started: float) -> float:
    _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"detector exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - started


def prepare(workdir: Path, images: int, imgsz: int) -> list[str]:
    """A project folder with configs/ and a generated dataset; the overrides every training here takes."""
    shutil.copytree(REPO / "configs", workdir / "configs")
    data = [f"data.splits.train={images}", f"data.splits.val={max(8, images // 5)}", "data.splits.test=8"]
    _wait(_cli(workdir, "data", "generate", f"data.imgsz={imgsz}", *data), time.perf_counter())
    return ["train.mlflow.enabled=false"]


def train_together(workdir: Path, overrides: list[str], threads: str, count: int, stagger_s: float) -> list[float]:
    """`count` trainings on `train.threads=threads`, each started `stagger_s` after the one before: each one's wall,
    then the time from the first's start to the last's end."""
    first = time.perf_counter()
    runs: list[tuple[subprocess.Popen[bytes], float]] = []
    for i in range(count):
        if i:
            time.sleep(stagger_s)
        args = [*overrides, f"train.threads={threads}", f"train.project={workdir / 'runs'}", f"train.name=r{i}"]
        # each its own folder: `detector train` writes models/best.pt and reports/ where it runs
        rundir = workdir / f"run{i}"
        rundir.mkdir(exist_ok=True)
        for name in ("configs", "data"):
            if not (rundir / name).exists():
                (rundir / name).symlink_to(workdir / name)
        runs.append((_cli(rundir, "train", *args), time.perf_counter()))
    walls = [_wait(proc, started) for proc, started in runs]
    return [*walls, time.perf_counter() - first] if count > 1 else walls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--images", type=int, default=200, help="training images generated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stagger", type=float, default=5.0, help="seconds between the two trainings' starts")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    cpus = available_cpus()
    theirs = str(ultralytics_threads(cpus))
    results: dict[str, list[float]] = {"alone_ultralytics": [], "alone_auto": [], "two_ultralytics": [], "two_auto": []}
    with tempfile.TemporaryDirectory(prefix="train-threads-") as tmp:
        workdir = Path(tmp)
        overrides = [*prepare(workdir, args.images, args.imgsz), f"train.epochs={args.epochs}"]
        overrides += [f"train.imgsz={args.imgsz}"]
        for _ in range(args.rounds):
            results["alone_ultralytics"] += train_together(workdir, overrides, theirs, 1, 0)
            results["alone_auto"] += train_together(workdir, overrides, "auto", 1, 0)
            results["two_ultralytics"] += train_together(workdir, overrides, theirs, 2, args.stagger)
            results["two_auto"] += train_together(workdir, overrides, "auto", 2, args.stagger)

    def best(key: str) -> float:
        return min(results[key])

    def both_done(key: str) -> float:  # two at once: [first, second, until both were done] per round
        return min(results[key][2::3])

    report: dict[str, Any] = {
        "cpus": cpus,
        "ultralytics_threads": int(theirs),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "images": args.images,
        "stagger_s": args.stagger,
        "walls_s": results,
        "alone_speedup": best("alone_ultralytics") / best("alone_auto"),
        "two_at_once_speedup": both_done("two_ultralytics") / both_done("two_auto"),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
