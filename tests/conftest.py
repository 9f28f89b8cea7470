"""Shared fixtures. The model every runtime/API test uses is trained for real, once per session, by the project's
own pipeline on the quick profile (generate -> train -> export -> evaluate), so tests exercise real artifacts.

Set DETECTOR_TEST_CACHE=/some/dir to keep that pipeline's output between local runs (CI always starts fresh).
Markers follow folders (tests/e2e -> slow, tests/gpu -> gpu), and every test that needs the trained model (the
`quick_pipeline` fixture, directly or through another fixture) is `slow` too, so `pytest -m "not slow"` trains nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]

# The quick profile: small enough to train in about two and a half minutes on 2 CPU cores, good enough to find
# objects with confidence on any CPU and seed. One optimizer step per batch of 8 (`nbs=8`): with Ultralytics' default
# nominal batch of 64, batches of 16 were accumulated 4 at a time, which left ~50 optimizer steps in 15 epochs and a
# model (val mAP50-95 0.09) whose best score (0.35-0.49) depended on the CPU it trained on. 20 epochs with one warm-up
# epoch: 15 epochs (3 of them warm-up) reached 0.79-0.83 with seed 0 but 0.49 with train.seed=1 (best score 0.22,
# too weak for the tracking tests), still climbing; 20 epochs and one warm-up epoch gave 0.75 with seed 1 and 0.85
# with seed 2 (measured on this project's AMD EPYC, 2026-12-03). Checked by training it under other numerics on one
# machine (ONEDNN_MAX_CPU_ISA=AVX2; one thread with another seed): the model-dependent tests pass under each
# (docs/testing.md).
QUICK_OVERRIDES = [
    "data.splits.train=200",
    "data.splits.val=40",
    "data.splits.test=20",
    "data.imgsz=128",
    "train.imgsz=128",
    "train.epochs=20",
    "train.batch=8",
    "train.ultralytics.nbs=8",
    "train.ultralytics.warmup_epochs=1",
]
STAGES = (["data", "generate"], ["train"], ["export", "onnx"], ["evaluate"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        if parts[0] == "e2e" or "quick_pipeline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        if parts[0] == "gpu":
            item.add_marker(pytest.mark.gpu)


def run_cli(
    args: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `detector ...` as a user would, from `cwd`, against the repo's configs (`env` on top of ours)."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, "-m", "cli", "--config-dir", str(REPO / "configs"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def quick_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the real quick pipeline ran: data/v1, models/{best.pt,model.onnx}, reports/, mlflow.db."""
    cache = os.environ.get("DETECTOR_TEST_CACHE")
    if cache:
        workdir = Path(cache)
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        # Each pytest-xdist worker has a session of its own: they share one folder in the run's temporary root (the
        # parent of each worker's own), so the pipeline runs once per run, not once per worker.
        workdir = tmp_path_factory.getbasetemp().parent / "pipeline"
    else:
        workdir = tmp_path_factory.mktemp("pipeline")
    workdir.mkdir(parents=True, exist_ok=True)
    # The first worker to need the model runs the pipeline; the others wait here, then read what it wrote (or its
    # failure, rather than training again to fail the same way).
    with FileLock(str(workdir) + ".lock"):
        failed = workdir / "pipeline-failed.txt"
        if failed.exists():
            pytest.fail(failed.read_text())
        if (workdir / "reports/metrics.json").exists():
            return workdir
        overrides = [*QUICK_OVERRIDES, f"train.mlflow.tracking_uri=sqlite:///{workdir / 'mlflow.db'}"]
        for stage in STAGES:
            proc = run_cli([*stage, *overrides], cwd=workdir)
            if proc.returncode != 0:
                message = f"pipeline stage {' '.join(stage)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                if not cache:  # a kept cache is tried again on the next run
                    failed.write_text(message)
                pytest.fail(message)
    return workdir


@pytest.fixture(scope="session")
def model_path(quick_pipeline: Path) -> Path:
    """A real trained ONNX model (3 classes, 128 px input) exported by the project."""
    return quick_pipeline / "models" / "model.onnx"


@pytest.fixture(scope="session")
def weights_path(quick_pipeline: Path) -> Path:
    return quick_pipeline / "models" / "best.pt"


@pytest.fixture(scope="session")
def dataset_dir(quick_pipeline: Path) -> Path:
    return quick_pipeline / "data" / "v1"


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    """The two real photos that ship inside the Ultralytics package (nothing is downloaded)."""
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        pytest.skip("ultralytics is not installed (install the train extra)")
    assets = Path(spec.origin).parent / "assets"
    return [assets / "bus.jpg", assets / "zidane.jpg"]
