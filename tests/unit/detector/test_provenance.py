"""detector.provenance.git_commit: the one implementation used by training's MLflow tags and the model card."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from detector.provenance import git_commit, short_commit


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("# r\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text("{}\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return tmp_path


def test_clean_checkout_gives_head(repo: Path) -> None:
    assert git_commit(repo) == git(repo, "rev-parse", "HEAD")


def test_edited_code_is_dirty_but_docs_reports_and_untracked_files_are_not(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("# edited\n")
    (repo / "reports" / "metrics.json").write_text('{"mAP": 1}\n')
    (repo / "scratch.txt").write_text("untracked\n")
    assert git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == head + "-dirty"
    assert short_commit(git_commit(repo)) == head[:12] + "-dirty"


def test_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path / "nowhere") == "unknown"
