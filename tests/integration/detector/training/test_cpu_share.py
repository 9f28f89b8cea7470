"""The CPU share of `train.threads=auto` with real processes and real locks: a training that starts beside another
counts it, one whose process dies stops counting, and PyTorch is kept on the share."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from detector.training.threads import (
    CpuShare,
    ThreadKeeper,
    available_cpus,
    cgroup_cpu_quota,
    threads_for,
    ultralytics_threads,
)

REPO = Path(__file__).resolve().parents[4]

# A training's registration in another process: it holds its share until killed
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from detector.training.threads import CpuShare
    with CpuShare(Path(sys.argv[1])):
        print("registered", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("cpus", "trainings", "threads"),
    [(1, 1, 1), (2, 1, 2), (2, 2, 1), (2, 3, 1), (4, 1, 3), (4, 2, 2), (16, 1, 8), (16, 2, 7), (16, 3, 4), (3, 0, 2)],
)
def test_threads_for_a_share(cpus: int, trainings: int, threads: int) -> None:
    assert threads_for(cpus, trainings) == threads


def test_ultralytics_threads_is_what_ultralytics_sets() -> None:
    from ultralytics.utils import NUM_THREADS

    assert ultralytics_threads(os.cpu_count() or 1) == NUM_THREADS


def test_a_training_beside_another_process_shares_and_takes_back_the_cpus(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with CpuShare(tmp_path, cpus=2) as share:
        assert share.trainings() == 2 and share.threads() == 1
        holder.send_signal(signal.SIGKILL)  # dies without closing its context: its lock goes with it
        holder.wait(timeout=10)
        assert share.trainings() == 1 and share.threads() == 2
        assert len(list(tmp_path.glob("*.lock"))) == 1, "the dead training's file is removed"
    assert share.trainings() == 0 and not list(tmp_path.glob("*.lock"))


def test_trainings_in_one_process_count_each(tmp_path: Path) -> None:
    with CpuShare(tmp_path, cpus=4) as first:
        assert first.threads() == 3
        with CpuShare(tmp_path, cpus=4) as second:
            assert first.trainings() == second.trainings() == 2 and first.threads() == 2
        assert first.trainings() == 1


@pytest.mark.parametrize("taken_as", ["a link to a folder of ours", "another user's folder"])
def test_a_registry_whose_name_someone_took_first_is_not_used(
    taken_as: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # In a shared temporary folder another user may make the registry's name first. Through a link to one of our
    # folders the count deleted every `*.lock` no training held there (uv.lock, poetry.lock...); in a folder of
    # theirs it would open whatever they put there. The training now goes on as the only one, and says why.
    project = tmp_path / "project"
    project.mkdir()
    (project / "uv.lock").write_text("version = 1\n")
    registry = tmp_path / "detector-trainings"
    if taken_as == "a link to a folder of ours":
        registry.symlink_to(project)
    elif os.getuid() == 0:
        registry.mkdir(mode=0o777)
        os.chown(registry, 65534, 65534)
    else:
        pytest.skip("making a folder another user's needs root")
    with caplog.at_level(logging.WARNING, "detector.training.threads"), CpuShare(registry, cpus=2) as share:
        assert share.trainings() == 1 and share.threads() == 2
    assert "cannot register this training" in caplog.text and "counts as the only one" in caplog.text
    assert sorted(p.name for p in project.iterdir()) == ["uv.lock"]
    if taken_as != "a link to a folder of ours":
        assert not list(registry.iterdir())


def test_a_registry_of_ours_that_others_may_write_in_is_closed_first(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    registry.chmod(0o777)
    with CpuShare(registry, cpus=2) as share:
        assert share.trainings() == 1 and len(list(registry.glob("*.lock"))) == 1
    assert registry.stat().st_mode & 0o777 == 0o700


def test_a_link_or_a_fifo_in_the_registry_neither_blocks_nor_is_followed(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    registry.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.lock"
    elsewhere.write_text("")
    (registry / "link.lock").symlink_to(elsewhere)
    os.mkfifo(registry / "fifo.lock")
    with CpuShare(registry, cpus=2) as share:
        assert share.trainings() == 1  # this one; opening the FIFO did not wait for a writer
    assert elsewhere.exists()


class _Owner:
    def __init__(self, device: str) -> None:
        import torch

        self.device = torch.device(device)


@pytest.fixture
def torch_threads() -> Iterator[int]:
    import torch

    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_the_keeper_sets_the_share_on_a_cpu_at_most_once_a_second(tmp_path: Path, torch_threads: int) -> None:
    import torch

    with CpuShare(tmp_path, cpus=2) as share:
        keeper = ThreadKeeper(share)
        torch.set_num_threads(1)  # what Ultralytics sets on 2 CPUs
        keeper(_Owner("cpu"))
        assert torch.get_num_threads() == 2
        with CpuShare(tmp_path, cpus=2):
            keeper(_Owner("cpu"))
            assert torch.get_num_threads() == 2, "asked again only after RECHECK_S"
            keeper._next_check = 0.0
            keeper(_Owner("cpu"))
            assert torch.get_num_threads() == 1 and keeper.counts == [2, 1]
        torch.set_num_threads(3)
        keeper._next_check = 0.0
        keeper(_Owner("meta"))  # not a CPU training (a GPU one): its threads are left alone
        assert torch.get_num_threads() == 3


def test_a_pinned_count_wins_over_the_share(tmp_path: Path, torch_threads: int) -> None:
    import torch

    with CpuShare(tmp_path, cpus=2) as share:
        assert ThreadKeeper(share, pinned=1).apply() == 1 and torch.get_num_threads() == 1


def test_the_keeper_is_installed_on_a_real_model(tmp_path: Path) -> None:
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    with CpuShare(tmp_path) as share:
        keeper = ThreadKeeper(share)
        keeper.install(model)
    for event in ("on_pretrain_routine_start", "on_train_batch_start", "on_val_batch_start"):
        assert keeper in model.callbacks[event]


def _tree(root: Path, files: dict[str, str], proc: str) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "proc_cgroup").write_text(proc)
    return root / "proc_cgroup"


@pytest.mark.parametrize(
    ("files", "proc", "quota"),
    [
        ({"fs/cpu.max": "200000 100000\n"}, "0::/\n", 2.0),  # cgroup v2 in a container (`docker --cpus=2`)
        ({"fs/cpu.max": "max 100000\n"}, "0::/\n", None),
        # v2 on a host: the process' folder and its parents, the smallest quota wins
        ({"fs/a/cpu.max": "150000 100000\n", "fs/a/b/cpu.max": "max 100000\n"}, "0::/a/b\n", 1.5),
        # v1: cpu,cpuacct joined; the path names the host's cgroup, the mount is the container's own
        (
            {"fs/cpu/cpu.cfs_quota_us": "300000\n", "fs/cpu/cpu.cfs_period_us": "100000\n"},
            "11:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n",
            3.0,
        ),
        ({"fs/cpu/cpu.cfs_quota_us": "-1\n", "fs/cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),
        ({"fs/cpu.max": "garbage\n"}, "0::/\n", None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v1_and_v2(
    tmp_path: Path, files: dict[str, str], proc: str, quota: float | None
) -> None:
    proc_cgroup = _tree(tmp_path, files, proc)
    assert cgroup_cpu_quota(tmp_path / "fs", proc_cgroup) == quota


def test_available_cpus_is_the_affinity_lowered_to_the_quota_rounded_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path / "fs", tmp_path / "no-such-file") == affinity
    proc_cgroup = _tree(tmp_path, {"fs/cpu.max": "50000 100000\n"}, "0::/\n")
    assert available_cpus(tmp_path / "fs", proc_cgroup) == 1  # half a CPU: one thread
    (tmp_path / "fs/cpu.max").write_text(f"{(affinity + 4) * 100000} 100000\n")
    assert available_cpus(tmp_path / "fs", proc_cgroup) == affinity  # a quota above the affinity changes nothing
