"""Which code produced an artifact: the git commit, for MLflow tags and the model card.

Standard library only: `scripts/render_cards.py` imports it in any environment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# Generated files that change while the pipeline runs (reports, the DVC lock, docs): editing them does not make the
# code that produced a model differ from the commit.
_NOT_CODE = (":!*.md", ":!reports", ":!dvc.lock")


def git_commit(repo: str | Path | None = None) -> str:
    """HEAD's full hash, with `-dirty` when tracked code differs from it; `unknown` outside a git checkout."""
    cwd = None if repo is None else str(repo)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *_NOT_CODE],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def short_commit(commit: str) -> str:
    """`0123456789ab-dirty` for tables: 12 hex digits keep the dirty marker visible."""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
