"""An imported dataset version is DVC-tracked like a generated one: in a clean copy of the project, import a COCO
export, `dvc add` it, train on it with `dvc exp run --temp -S configs/data.yaml:data.version=NAME`, check `dvc status`,
push to the local remote, delete data and cache, pull, and get the same bytes back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detector.data import dataset_hash
from tests.project_clone import commit, copy_project, init_repo, run_ok
from tests.unit.data.importers.exporters import export_coco, small_v1

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


def test_imported_version_is_tracked_pushed_and_pulled(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    copy_project(clone)
    init_repo(clone)

    v1 = small_v1(tmp_path / "gen" / "v1")
    coco = export_coco(v1, tmp_path / "export")
    args = ["--format", "coco", "--images", str(v1 / "images"), *[f"--annotations={f}" for f in coco.values()]]
    report = json.loads(_run([sys.executable, "-m", "cli", "data", "import", *args, "--version", "mine"], clone).stdout)
    assert report["dataset"] == "data/mine"
    imported = _files(clone / "data" / "mine")

    # Tracked as the README says: dvc add, then the pointer file goes to git (autostage stages it and data/.gitignore).
    _run(["dvc", "add", "data/mine"], clone)
    staged = _run(["git", "diff", "--cached", "--name-only"], clone).stdout.split()
    assert {"data/mine.dvc", "data/.gitignore"} <= set(staged)
    assert "/mine" in (clone / "data" / ".gitignore").read_text().split()
    commit(clone, "data: import mine")
    assert "up to date" in _run(["dvc", "status", "data/mine.dvc"], clone).stdout

    # An experiment on it: train reads data/mine (a tiny run: 1 epoch at 64 px), nothing is generated over it.
    # --temp, as scripts/experiments.py runs them: a fresh copy of the commit, so data/mine must come from the cache.
    tiny = [f"configs/train.yaml:train.{k}" for k in ("epochs=1", "imgsz=64", "batch=8", "workers=0")]
    exp = ["dvc", "exp", "run", "--temp", "train", "-n", "on-mine", "-S", "configs/data.yaml:data.version=mine"]
    _run([*exp, *[a for t in tiny for a in ("-S", t)]], clone)
    assert _files(clone / "data" / "mine") == imported
    shown = _experiment(json.loads(_run(["dvc", "exp", "show", "--json"], clone).stdout), "on-mine")
    assert shown["params"]["configs/data.yaml"]["data"]["data"]["version"] == "mine"
    trained = shown["metrics"]["reports/train.json"]["data"]
    assert trained["dataset_version"] == "mine" and trained["dataset_sha256"] == report["sha256"]
    assert "data/mine" in shown["deps"]

    # The local remote round trip: push, lose the data and the cache, pull the same bytes back.
    _run(["dvc", "push", "data/mine.dvc"], clone)
    shutil.rmtree(clone / "data" / "mine")
    shutil.rmtree(clone / ".dvc" / "cache")
    _run(["dvc", "pull", "data/mine.dvc"], clone)
    assert _files(clone / "data" / "mine") == imported
    manifest = json.loads((clone / "data" / "mine" / "manifest.json").read_text())
    assert manifest["sha256"] == dataset_hash(clone / "data" / "mine") == report["sha256"]
    assert "up to date" in _run(["dvc", "status", "data/mine.dvc"], clone).stdout
