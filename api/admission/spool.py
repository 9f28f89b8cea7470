"""Where an uploaded clip waits while it is processed: one file per clip in `video_tmp_dir`, that no crash leaves
behind for good.

A clip is spooled to `detector-video-<random><suffix>`, named by the server (never by the client), and removed when
its stream ends, fails or is abandoned. A process killed mid-stream (SIGKILL, the OOM killer) never gets to remove
it, and before this each such crash left up to `max_upload_mb` per clip in the temp folder for good (a container
restarted in place keeps its /tmp). So every spooled file is held under an exclusive `flock` for as long as its job
lives, and a starting service removes the spooled files nobody holds: the kernel releases a dead process's locks,
so another service sharing the folder (a Ray replica, a second worker) keeps its clips. A file is created under a
name the sweep does not match, locked, and only then renamed, so a sweep never sees an unlocked new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("api.video")

PREFIX = "detector-video-"  # a spooled clip; the sweep removes the ones no live job holds
_NEW = ".detector-video-new-"  # while it is being created and locked


class SpooledClip:
    """A spooled clip's path and the descriptor that holds its lock; `close()` removes it (idempotent)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def writer(self) -> int:
        """A descriptor to write the upload through (the caller closes it); the lock stays with this object."""
        return os.dup(self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # an open reader keeps reading an unlinked file; the name is gone at once
        os.close(self._fd)  # releases the lock
        self._fd = -1


def spool(folder: str | None, suffix: str) -> SpooledClip:
    """A new, empty, locked file for a clip in `folder` (None: the system's temp folder)."""
    fd, name = tempfile.mkstemp(prefix=_NEW, suffix=suffix, dir=folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else has opened it yet: never blocks
        path = Path(name).with_name(PREFIX + Path(name).name.removeprefix(_NEW))
        os.rename(name, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return SpooledClip(path, fd)


def prepare(folder: str | None) -> int:
    """Make `folder` (None: the system's temp folder) and remove the spooled clips in it that no live process holds
    (left by a crash); returns how many."""
    root = Path(folder or tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in root.glob(PREFIX + "*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, a link, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live job's
        else:
            with contextlib.suppress(OSError):  # gone meanwhile, or another user's in a shared /tmp: not ours
                path.unlink()
                removed += 1
        finally:
            os.close(fd)
    if removed:
        log.warning("removed %d spooled clip(s) in %s left by a process that ended mid-stream", removed, root)
    return removed
