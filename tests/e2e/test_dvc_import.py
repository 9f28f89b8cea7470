"""An imported dataset version is DVC-tracked like a generated one: in a clean copy of the project, import a COCO
export, `dvc add` it; serve a model with the active-learning inbox on and import the inbox on top of it as the next
version (`--base`); train on that with `dvc exp run --temp -S configs/data.yaml:data.version=NAME`, check `dvc
status`, push to the local remote, delete data and cache, pull, and get the same bytes back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from detector.data import dataset_hash
from tests.project_clone import commit, copy_project, init_repo, run_ok
from tests.servers import serving
from tests.unit.detector.data.importers.exporters import export_coco, small_v1

pytest.importorskip("dvc")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_ok(cmd, cwd, timeout=300, env={"PYTHONPATH": str(cwd)})  # the copy's own code


def _files(root: Path) -> dict[str, bytes]:
    """The dataset's files; Ultralytics' labels/*.cache (written during training, .dvcignore-d) left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".cache"
    }


def _experiment(shown: object, name: str) -> dict[str, Any]:
    """The `data` of experiment `name` in `dvc exp show --json` output."""
    if isinstance(shown, dict):
        if shown.get("name") == name and isinstance(shown.get("data"), dict):
            data: dict[str, Any] = shown["data"]
            return data
        shown = list(shown.values())
    if isinstance(shown, list):
        for item in shown:
            try:
                return _experiment(item, name)
            except LookupError:
                pass
    raise LookupError(name)


def _track(clone: Path, version: str) -> None:
    """As the README says: dvc add, then the pointer file goes to git (autostage stages it and data/.gitignore)."""
    _run(["dvc", "add", f"data/{version}"], clone)
    staged = _run(["git", "diff", "--cached", "--name-only"], clone).stdout.split()
    assert {f"data/{version}.dvc", "data/.gitignore"} <= set(staged)
    assert f"/{version}" in (clone / "data" / ".gitignore").read_text().split()
    commit(clone, f"data: {version}")
    assert "up to date" in _run(["dvc", "status", f"data/{version}.dvc"], clone).stdout


def _inbox_of_a_live_server(clone: Path, model_path: Path, images: list[Path]) -> int:
    """`detector serve` with the inbox on (every image with a box kept: a known count), `images` posted; the number
    of images the inbox holds once the server has stopped."""
    inbox = clone / "inbox"
    band = "inference.inbox.conf_band=[0,1]"
    with serving(model_path, clone, "inference.inbox.enabled=true", f"inference.inbox.dir={inbox}", band) as server:
        answers = [httpx.post(f"{server.url}/predict", files={"file": p.read_bytes()}, timeout=30) for p in images]
        assert all(r.status_code == 200 for r in answers)
        expected = sum(1 for r in answers if r.json()["detections"])
        deadline = time.monotonic() + 30
        while len(list((inbox / "images").glob("*"))) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
    kept = len(list((inbox / "images").glob("*")))
    assert expected > 0 and kept == expected
    assert "inbox" in _run(["git", "check-ignore", "inbox"], clone).stdout  # never committed by accident
    return kept


def test_imported_versions_are_tracked_trained_on_pushed_and_pulled(
    tmp_path: Path, model_path: Path, dataset_dir: Path
) -> None:
    """The data loop as the docs walk it: a COCO export imported as `mine`; a live server's active-learning inbox
    imported on top of it as `v3`; both tracked by DVC; an experiment trains on v3; push, lose, pull."""
    clone = tmp_path / "clone"
    copy_project(clone)
    init_repo(clone)
    py = [sys.executable, "-m", "cli"]

    v1 = small_v1(tmp_path / "gen" / "v1")
    coco = export_coco(v1, tmp_path / "export")
    args = ["--format", "coco", "--images", str(v1 / "images"), *[f"--annotations={f}" for f in coco.values()]]
    report = json.loads(_run([*py, "data", "import", *args, "--version", "mine"], clone).stdout)
    assert report["dataset"] == "data/mine"
    _track(clone, "mine")

    # The service's inbox (images it has not seen: another dataset's test split), reviewed, becomes the next version.
    kept = _inbox_of_a_live_server(clone, model_path, sorted((dataset_dir / "images" / "test").glob("*")))
    args = ["--format", "yolo", "--source", "inbox", "--base", "mine", "--version", "v3"]
    v3 = json.loads(_run([*py, "data", "import", *args], clone).stdout)
    base = sum(report["counts"].values())
    assert v3["base"] == {"version": "mine", "images": base, "added": kept}
    assert sum(v3["counts"].values()) == base + kept
    _track(clone, "v3")
    imported = {name: _files(clone / "data" / name) for name in ("mine", "v3")}

    # An experiment on it: train reads data/v3 (a tiny run: 1 epoch at 64 px), nothing is generated over it.
    # --temp, as scripts/experiments.py runs them: a fresh copy of the commit, so data/v3 must come from the cache.
    tiny = [f"configs/train.yaml:train.{k}" for k in ("epochs=1", "imgsz=64", "batch=8", "workers=0")]
    exp = ["dvc", "exp", "run", "--temp", "train", "-n", "on-v3", "-S", "configs/data.yaml:data.version=v3"]
    _run([*exp, *[a for t in tiny for a in ("-S", t)]], clone)
    assert _files(clone / "data" / "v3") == imported["v3"]
    shown = _experiment(json.loads(_run(["dvc", "exp", "show", "--json"], clone).stdout), "on-v3")
    assert shown["params"]["configs/data.yaml"]["data"]["data"]["version"] == "v3"
    trained = shown["metrics"]["reports/train.json"]["data"]
    assert trained["dataset_version"] == "v3" and trained["dataset_sha256"] == v3["sha256"]
    assert "data/v3" in shown["deps"]

    # The local remote round trip: push, lose the data and the cache, pull the same bytes back.
    _run(["dvc", "push", "data/mine.dvc", "data/v3.dvc"], clone)
    for name in imported:
        shutil.rmtree(clone / "data" / name)
    shutil.rmtree(clone / ".dvc" / "cache")
    _run(["dvc", "pull", "data/mine.dvc", "data/v3.dvc"], clone)
    for name, files in imported.items():
        assert _files(clone / "data" / name) == files
        manifest = json.loads((clone / "data" / name / "manifest.json").read_text())
        assert manifest["sha256"] == dataset_hash(clone / "data" / name)
        assert "up to date" in _run(["dvc", "status", f"data/{name}.dvc"], clone).stdout
    assert manifest["sha256"] == v3["sha256"]
