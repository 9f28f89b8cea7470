"""`check_outputs`: an output that is the clip itself (by another name, a symlink or a hard link) or another output
is refused before anything is opened for writing; before, `--save clip.mp4` truncated the clip being read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detector.errors import InvalidInputError
from detector.runtime.video import check_outputs


def test_an_output_that_is_the_clip_or_another_output_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"the user's only copy")
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    for same in (clip, tmp_path / "sub" / ".." / "clip.mp4", tmp_path / "link.mp4", tmp_path / "hard.mp4"):
        with pytest.raises(InvalidInputError, match="is the clip itself"):
            check_outputs(clip, None, same)
    with pytest.raises(InvalidInputError, match="is another output"):
        check_outputs(clip, tmp_path / "out.mp4", tmp_path / "sub" / ".." / "out.mp4")
    check_outputs(clip, tmp_path / "out.mp4", tmp_path / "out.jsonl", None)  # distinct files: fine
    assert clip.read_bytes() == b"the user's only copy"
