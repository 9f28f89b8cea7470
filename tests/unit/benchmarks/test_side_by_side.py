"""`benchmarks.side_by_side`: the blocks alternate fairly, the split and the differences are right, a revision that
does not exist is a clear error, and the base really runs from its own checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import side_by_side
from benchmarks.errors import BenchmarkInputError

REPO = Path(__file__).resolve().parents[3]


class FakeClient:
    """Answers at once with a fixed endpoint time; records when it was called."""

    def __init__(self, name: str, log: list[str], endpoint_ms: float) -> None:
        self.name, self.log, self.endpoint_ms = name, log, endpoint_ms

    def post_jpeg(self, jpeg: bytes) -> float:
        self.log.append(self.name)
        return self.endpoint_ms


def test_blocks_alternate_and_each_side_goes_first_as_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(side_by_side.time, "sleep", lambda s: None)
    log: list[str] = []
    clients = {"base": FakeClient("base", log, 17.0), "this": FakeClient("this", log, 17.1)}
    timed = side_by_side.alternate(clients, [b"a", b"b"], rounds=4, block=3)  # type: ignore[arg-type]
    measured = log[2 * 4 * 2 :]  # after each side's warm-up of 4 x 2 photos
    blocks = [measured[i] for i in range(0, len(measured), 3)]
    assert blocks == ["base", "this", "this", "base", "base", "this", "this", "base"]
    assert {side: len(pairs) for side, pairs in timed.items()} == {"base": 12, "this": 12}
    assert all(pair[1] == 17.0 and 0 <= pair[0] < 1000 for pair in timed["base"])  # [client ms, endpoint ms]


def test_the_summary_splits_each_request_and_subtracts_the_base() -> None:
    timed = {
        "base": [[20.0, 17.0], [22.0, 18.0], [21.0, 17.5]],
        "this": [[19.0, 17.0], [21.0, 18.5], [20.0, float("nan")]],  # a service that sent no Server-Timing once
    }
    s = side_by_side.summarize(timed)
    assert s["sides"]["base"] == {"p50_ms": 21.0, "endpoint_p50_ms": 17.5, "outside_endpoint_p50_ms": 3.5, "n": 3}
    assert s["sides"]["this"]["outside_endpoint_p50_ms"] == pytest.approx(np.median([2.0, 2.5]))
    assert s["this_minus_base"]["p50_ms"] == -1.0
    assert s["this_minus_base"]["outside_endpoint_p50_ms"] == pytest.approx(2.25 - 3.5)
    report = {
        "started": "2026-12-07T03:30:22+00:00",
        "machine": {"cpu": "Some CPU", "cores": 2},
        "threads": 2,
        "model": "m.onnx",
        "rounds": 3,
        "block": 1,
        "revisions": {"base": "abc1234", "this": "def5678"},
        "command": "python -m benchmarks.side_by_side --base abc1234 --model m.onnx",
        "summary": s,
    }
    text = side_by_side.to_markdown(report)
    assert "| base (abc1234) | 21.0 | 17.5 | 3.5 | 3 |" in text
    assert "| this minus base | -1.0 |" in text


def test_a_revision_that_does_not_exist_is_a_clear_error() -> None:
    with (
        pytest.raises(BenchmarkInputError, match="cannot check out 'no-such-revision-anywhere'"),
        side_by_side.worktree("no-such-revision-anywhere"),
    ):
        pass


def test_the_base_runs_its_own_code_from_its_checkout() -> None:
    """The service command imports the checkout's packages, not this one's: the base's `api` comes from the
    temporary worktree (which is removed afterwards)."""
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    with side_by_side.worktree("HEAD") as checkout:
        code = "import api, pathlib; print(pathlib.Path(api.__file__).resolve())"
        env = {"PYTHONPATH": str(checkout), "PATH": ""}
        out = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, capture_output=True, text=True)
        assert Path(out.stdout.strip()).is_relative_to(checkout.resolve()), out.stderr
    assert not checkout.exists()
