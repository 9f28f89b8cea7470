"""`BackendOptions.for_clip`: what `detector predict clip.mp4` changes in the serving options (only `hint: auto`,
which becomes throughput: a clip's frames are a queue that never runs dry), and what the shipped config asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import OpenVinoConfig, load_config
from detector.runtime.backends.base import BackendOptions

REPO = Path(__file__).resolve().parents[4]


def test_auto_becomes_throughput_for_a_clip_and_nothing_else_changes() -> None:
    options = BackendOptions(threads=2, openvino=OpenVinoConfig(hint="auto", precision="int8", streams=3))
    clip = options.for_clip()
    assert clip.openvino.hint == "throughput"
    assert clip.openvino.model_dump(exclude={"hint"}) == options.openvino.model_dump(exclude={"hint"})
    assert (clip.threads, clip.device) == (2, options.device)
    assert options.openvino.hint == "auto"  # a copy: the options given are unchanged


@pytest.mark.parametrize("hint", ["latency", "throughput", "adaptive"])
def test_a_pinned_hint_is_kept_for_a_clip(hint: str) -> None:
    options = BackendOptions(openvino=OpenVinoConfig(hint=hint))  # type: ignore[arg-type]
    assert options.for_clip() is options


def test_the_shipped_config_leaves_the_choice_to_auto() -> None:
    config = load_config(config_dir=REPO / "configs", environ={})
    assert config.inference.openvino.hint == "auto"
    assert BackendOptions.from_config(config).for_clip().openvino.hint == "throughput"
