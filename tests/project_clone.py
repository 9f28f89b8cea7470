"""A clean copy of the project as a fresh git repository, for the tests that run DVC on it, and running commands in
it with the environment's tools first on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_ok(
    cmd: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in `cwd`, offline, with this Python's scripts (dvc) first on PATH and `env` on top of ours; fail
    the test with the end of its output unless it succeeds."""
    bin_dir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "YOLO_OFFLINE": "1", **(env or {}), "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def copy_project(clone: Path) -> None:
    """The files git tracks, and the untracked ones it does not ignore, copied to `clone`; no dvc.lock, so every
    stage is out of date there."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, clone / rel)
    (clone / "dvc.lock").unlink(missing_ok=True)


def commit(clone: Path, message: str) -> None:
    run_ok(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], clone)


def init_repo(clone: Path) -> None:
    """`clone` as a git repository whose one commit holds all of it."""
    run_ok(["git", "init", "-q"], clone)
    run_ok(["git", "add", "-A"], clone)
    commit(clone, "clone")
