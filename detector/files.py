"""Writing outputs so that each appears complete or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through a staged sibling renamed into place: readers (DVC, a running service, the
    next pipeline stage) never see a half-written file, and a crash leaves no valid-looking output behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.partial")
    if isinstance(data, str):
        staged.write_text(data)
    else:
        staged.write_bytes(data)
    os.replace(staged, path)
