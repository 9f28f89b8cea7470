"""Writing outputs so that each appears complete or not at all."""

from __future__ import annotations

import os
import secrets
import shutil
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


def replace_dir(src: Path, dst: Path) -> None:
    """Move the folder `src` to `dst`, replacing any existing `dst`; `dst` is never a mix of old and new files.

    `src` must be on the same file system as `dst` (a sibling), so each rename is atomic."""
    if not dst.exists():
        os.replace(src, dst)
        return
    # Two renames: a directory cannot atomically replace a non-empty one. In between, `dst` is briefly
    # absent (never half-written); if the second rename fails the previous folder is put back.
    old = dst.parent / f".{dst.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


def staging_dir(dst: Path, tag: str = "tmp") -> Path:
    """A new, empty hidden sibling of `dst` to build it in before `replace_dir(staging, dst)`. Created with mkdir
    (not mkdtemp, which makes it 0700) so the result gets the usual umask permissions."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    staged = dst.parent / f".{dst.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"
    staged.mkdir()
    return staged
