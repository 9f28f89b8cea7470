"""How many CPU threads a CPU training computes on: this machine's CPUs shared between the trainings running on it.

Why not Ultralytics' choice: it trains on `min(8, CPUs - 1)` threads, leaving a core to the data loader, which on a
2-core machine is one thread and half the machine idle. Measured on a 2-core Intel Xeon (AMX) VM, `yolov8n.yaml`,
3 epochs of 200 images at 256 px, batch 16, 2 loader workers: 60.5 s on one thread, 40.5 s on two (1.49x); two loader
workers or one made no difference (35.7 s and 35.6 s), so the loader needs much less than a core at these sizes
(`benchmarks/train_threads.py` measures it again). The default pipeline's 20 epochs: 756 s on one thread, 396 s on
two (1.91x, one run after the other).

Why shared: PyTorch's OpenMP threads spin while they wait for work, so threads beyond the machine's CPUs are ruinous.
Two such trainings at once on those 2 cores (2 threads each) took 102 s each against 22 s each on one thread (128 px);
one on 2 threads beside one on 1 took 48 s and 34 s. With `OMP_WAIT_POLICY=PASSIVE` or `GOMP_SPINCOUNT=0` the
threads no longer fight, but two threads then gain almost nothing on one (52-59 s against 60.5 s at 256 px). So each
training registers itself here (a lock file held while it runs; a process that dies lets go of its lock) and computes
on its share of the CPUs, asked again while it trains: one that starts beside another shrinks it within a second.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

# Ultralytics' ceiling (`ultralytics.utils.NUM_THREADS`), kept: nothing here measured more threads than 2.
MAX_THREADS = 8
RECHECK_S = 1.0
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use: its affinity (`taskset`, `docker --cpuset-cpus`), lowered to its cgroup's CPU
    quota where one is set (`docker --cpus=2`, a Kubernetes limit), rounded up. Threads beyond a quota are throttled:
    the affinity alone would give a training on a 32-core host limited to 2 CPUs Ultralytics' 8 threads."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity (nor cgroups)
        return os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The smallest CPU quota, in CPUs, of this process' cgroup and its parents up to the mount (cgroup v2's
    `cpu.max`, v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`); None where none is set or cgroups cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2's unified hierarchy
            mount, read = root, _v2_quota
        elif "cpu" in controllers.split(","):  # cgroup v1's cpu controller (its folder: "cpu" or a link to it)
            mount, read = root / "cpu", _v1_quota
        else:
            continue
        # The process' own folder and its parents; inside a container the mount is often the container's own
        # cgroup while the path names the host's, so a path that is not there leaves the mount alone.
        folder = mount / path.lstrip("/")
        for candidate in [folder, *folder.parents]:
            if candidate.is_dir():
                quota = read(candidate)
                if quota is not None:
                    quotas.append(quota)
            if candidate == mount:
                break
    return min(quotas) if quotas else None


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def ultralytics_threads(cpus: int) -> int:
    """What Ultralytics trains on (`ultralytics.utils.NUM_THREADS`) with this many CPUs."""
    return min(MAX_THREADS, max(1, cpus - 1))


def threads_for(cpus: int, trainings: int) -> int:
    """Threads for one of `trainings` trainings sharing `cpus` CPUs: the share whole when it is 1 or 2 CPUs (the
    loader costs little, measured above), else Ultralytics' rule on the share (a CPU left to the loader, at most 8)."""
    share = max(1, cpus // max(1, trainings))
    return share if share <= 2 else ultralytics_threads(share)


def default_registry() -> Path:
    """Per user, in the system's temporary folder: the trainings one user runs share the machine."""
    return Path(tempfile.gettempdir()) / f"detector-trainings-{os.getuid()}"


def private_folder(path: Path) -> None:
    """Make `path` a folder of this user's that only they may use (closing one of theirs that others could write in);
    OSError where it is not theirs or not a folder. In a shared temporary folder anyone may take the name first: a
    folder of theirs (where they could put links or FIFOs for the count to open) or a link to a folder of ours (whose
    `*.lock` files, `uv.lock` among them, the count took for dead trainings' and deleted)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise PermissionError(errno.EPERM, "not a folder of this user's (a link, or made by another user)", str(path))
    if stat.S_IMODE(found.st_mode) != 0o700:
        os.chmod(path, 0o700)  # (ours, in a sticky folder: nobody else can put another in its place)


class CpuShare:
    """This training's entry in `registry` while the context is open; `threads()` is its current share."""

    def __init__(self, registry: Path | None = None, cpus: int | None = None) -> None:
        self.registry = registry or default_registry()
        self.cpus = cpus or available_cpus()
        self._fd: int | None = None
        self._usable = True  # False: the registry could not be used (`__enter__` says why)

    def __enter__(self) -> CpuShare:
        try:
            private_folder(self.registry)
            # Locked under a hidden name, then renamed: a counter never sees the file before its lock is held, so
            # it cannot take it for a dead training's and delete it.
            fd, hidden = tempfile.mkstemp(prefix=".", suffix=".lock", dir=self.registry)
        except OSError as exc:
            # The training goes on, counted as the only one (the count it had before this registry existed).
            log.warning("cannot register this training in %s (%s): it counts as the only one", self.registry, exc)
            self._usable = False
            return self
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(hidden, self.registry / f"{os.getpid()}-{Path(hidden).name[1:]}")
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # lets go of the lock; the next count removes the file
            self._fd = None
        self.trainings()

    def trainings(self) -> int:
        """How many registered trainings are alive, this one included; dead ones' files are removed."""
        if not self._usable:
            return 1
        alive = 0
        for path in self.registry.glob("[!.]*.lock"):
            try:
                # (Never a link nor a FIFO in a folder of ours; but opening one must not follow it nor wait.)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # another counter removed it (or it is not a file a training made)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive += 1  # its training holds it (ours too: a second open file does not share our lock)
            else:
                path.unlink(missing_ok=True)  # its process ended without closing the context
            finally:
                os.close(fd)
        return alive

    def threads(self) -> int:
        return threads_for(self.cpus, self.trainings())


class ThreadKeeper:
    """Ultralytics callbacks that keep PyTorch on `share`'s thread count on a CPU (asked at most once a second), or
    on `pinned` threads where the configuration pins them (the training still counts in the others' shares).
    Ultralytics sets its own count when it picks the device, after the model is built, so the count is set again
    when the training routine starts."""

    def __init__(self, share: CpuShare, pinned: int | None = None) -> None:
        self.share = share
        self.pinned = pinned
        self._next_check = 0.0
        # The counts computed on, in order (auto's changes as trainings start and end beside this one): logged and
        # kept with the run, as the thread count moves the floating-point sums a little
        self.counts: list[int] = []

    def install(self, model: Any) -> None:
        for event in ("on_pretrain_routine_start", "on_train_batch_start", "on_val_batch_start"):
            model.add_callback(event, self)

    def __call__(self, owner: Any) -> None:
        # `owner` is the trainer, or the validator (which has a device only once its run began)
        device = getattr(owner, "device", None)
        if device is None or getattr(device, "type", str(device)) != "cpu":
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RECHECK_S
        self.apply()

    def apply(self) -> int:
        import torch

        wanted = self.pinned if self.pinned is not None else self.share.threads()
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        if not self.counts or wanted != self.counts[-1]:
            log.info("training on %d CPU thread(s)", wanted)
            self.counts.append(wanted)
        return wanted
