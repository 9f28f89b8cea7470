"""A Python snippet run in a child process from the repository root: for what must not touch the test process
itself (freezing its objects, making a package unimportable)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def python_child(code: str, *args: str, timeout: float = 120) -> str:
    """Run `python -c code args...` from the repository root; its stdout. Fails the test, with the end of its stderr,
    when it exits non-zero."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
