"""Writing outputs so that each appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path

# The mode a plain `open(path, "w")` would give a new file. mkstemp creates 0600 files; outputs are shared artifacts
# (DVC caches them, a service in another account reads them), so new files get the usual umask-based mode instead.
# Read once at import: os.umask can only be read by setting it, which is not thread-safe to do per call.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through a staged sibling renamed into place.

    Readers (DVC, a running service, the next pipeline stage) never see a half-written file:
    - the staging file is unique per call (mkstemp in the target's folder, so the rename stays on one filesystem),
      so two threads or processes writing the same path never write into each other's staging file;
    - the data is fsynced before the rename and the folder after it, so a power loss cannot leave the new name
      pointing at empty or partial contents;
    - on any error (including KeyboardInterrupt) the staging file is removed and the old file is left as it was.
    An existing file keeps its permission bits.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                mode = path.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~_UMASK
            os.fchmod(fh.fileno(), mode)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); platforms that cannot open a folder skip it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the data itself is already on disk
    finally:
        os.close(fd)


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
