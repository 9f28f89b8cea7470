"""Spooled clips (`api.admission.spool`): each held under a lock while its job lives; a starting service removes the
ones no live process holds, which is what a process killed mid-stream leaves (before: kept in /tmp for good)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from api.admission.spool import PREFIX, prepare, spool

REPO = Path(__file__).resolve().parents[3]


def _locked(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_spooled_clip_is_held_while_its_job_lives_and_removed_after(tmp_path: Path) -> None:
    clip = spool(str(tmp_path), ".mp4")
    assert clip.path.parent == tmp_path and clip.path.name.startswith(PREFIX) and clip.path.suffix == ".mp4"
    with os.fdopen(clip.writer(), "wb") as out:
        out.write(b"clip bytes")
    assert clip.path.read_bytes() == b"clip bytes" and _locked(clip.path)
    assert prepare(str(tmp_path)) == 0 and clip.path.exists()  # a live job's clip stays
    clip.close()
    clip.close()  # idempotent
    assert list(tmp_path.iterdir()) == []


def test_the_clips_of_a_killed_process_are_removed_and_nothing_else(tmp_path: Path) -> None:
    code = (
        "import sys, time; from api.admission.spool import spool; "
        f"clip = spool({str(tmp_path)!r}, '.avi'); print(clip.path, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    orphan = Path(proc.stdout.readline().strip())
    live = spool(str(tmp_path), ".mp4")
    (tmp_path / "unrelated.mp4").write_bytes(b"not ours")
    (tmp_path / f"{PREFIX}link.mp4").symlink_to(tmp_path / "unrelated.mp4")  # never followed
    try:
        assert prepare(str(tmp_path)) == 0  # its owner is alive
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert orphan.exists() and not _locked(orphan)  # the kernel released the dead process's lock
        assert prepare(str(tmp_path)) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [f"{PREFIX}link.mp4", live.path.name, "unrelated.mp4"]
        )
    finally:
        proc.kill()
        live.close()
    assert (tmp_path / "unrelated.mp4").read_bytes() == b"not ours"


def test_a_missing_folder_is_made(tmp_path: Path) -> None:
    # Before: video_tmp_dir naming a folder that did not exist made every clip a 500.
    with pytest.raises(FileNotFoundError):
        spool(str(tmp_path / "absent" / "spool"), ".mp4")
    assert prepare(str(tmp_path / "absent" / "spool")) == 0
    spool(str(tmp_path / "absent" / "spool"), ".mp4").close()
