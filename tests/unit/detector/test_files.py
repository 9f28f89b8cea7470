"""detector.files.write_atomic: complete or nothing, durable, one staging file per writer, cleaned up on error."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from detector import files
from detector.files import write_atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_writes_bytes_and_text_and_creates_the_folder(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a" / "b.bin", b"\x00\x01")
    write_atomic(tmp_path / "a" / "c.txt", "héllo\n")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a" / "c.txt").read_text(encoding="utf-8") == "héllo\n"
    assert leftovers(tmp_path / "a") == []


def test_data_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"
    events: list[tuple[str, Any]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        # Regular file (the staged data) or the folder (after the rename)?
        events.append(("fsync", "file" if stat.S_ISREG(os.fstat(fd).st_mode) else "dir"))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    write_atomic(target, b"{}")
    assert events == [("fsync", "file"), ("replace", "out.json"), ("fsync", "dir")]


def test_two_threads_of_one_process_never_share_a_staging_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both writers are held between writing and renaming at the same time; each must have its own staged file."""
    target = tmp_path / "model.onnx"
    barrier = threading.Barrier(2, timeout=10)
    staged: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            barrier.wait()  # both staged files exist and are complete now

    def replace(src: Any, dst: Any) -> None:
        staged.append(str(src))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    payloads = [b"A" * 200_000, b"B" * 300_000]
    errors: list[BaseException] = []

    def run(data: bytes) -> None:
        try:
            write_atomic(target, data)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len(staged) == 2 and staged[0] != staged[1]
    assert target.read_bytes() in payloads  # one writer's complete data, never a mix
    assert leftovers(tmp_path) == []


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_staged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new" * 1000)
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_interrupt_during_write_is_cleaned_up_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "best.pt"

    def interrupted(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"weights")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_new_files_get_the_umask_mode_and_existing_files_keep_theirs(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.txt"
    write_atomic(fresh, "x")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~files._UMASK  # not mkstemp's 0600
    kept = tmp_path / "script.sh"
    kept.write_text("old")
    kept.chmod(0o750)
    write_atomic(kept, "new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o750
