"""What the numbers were measured on: CPU, cores, GPU, library versions. Every field degrades to "unknown"."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from detector.training.threads import available_cpus

LIBRARIES = ("onnxruntime", "openvino", "ultralytics", "torch", "numpy", "onnx", "opencv-python-headless", "tensorrt")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may use (the affinity mask, which containers and taskset narrow, lowered to a cgroup's CPU
    quota), not the host's."""
    return available_cpus()


def gpus() -> list[str]:
    """NVIDIA GPUs as "name, memory, driver" lines from nvidia-smi; [] when there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed distribution versions (from package metadata, so nothing heavy is imported); "absent" if none."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def thread_round_trip_us(rounds: int = 400) -> float | None:
    """Median microseconds for an event loop to hand a no-op to a pool thread and get its answer back: what each
    of the service's hand-offs (to the decode pool, to the model thread) costs on this machine before any work. It
    differs several-fold between hosts (a VM's vCPUs wake each other slowly), and with it the HTTP overhead. None
    when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
        return None
    except RuntimeError:
        pass

    async def hops(pool: ThreadPoolExecutor) -> list[float]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, int)  # the thread started
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await loop.run_in_executor(pool, int)
            times.append(time.perf_counter() - start)
        return times

    with ThreadPoolExecutor(max_workers=1) as pool:
        return round(statistics.median(asyncio.run(hops(pool))) * 1e6, 1)


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus_on_host": os.cpu_count() or 0,
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        # oneDNN's instruction-set cap, when set: the same CPU computes INT8 and bf16 at other speeds under it.
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
        "thread_round_trip_us": thread_round_trip_us(),
    }


def cpu_text(machine: dict[str, Any]) -> str:
    """The CPU as a report names it: its model, and oneDNN's instruction-set cap when the run had one."""
    cap = machine.get("onednn_max_cpu_isa")
    return f"{machine.get('cpu', '?')}" + (f" with ONEDNN_MAX_CPU_ISA={cap}" if cap else "")


def machine_line(report: dict[str, Any]) -> str:
    """The start of a report's "Machine:" line: the CPU, its usable cores and the threads the run used."""
    m = report["machine"]
    return f"Machine: {cpu_text(m)}, {m.get('cores', '?')} cores; threads {report['threads']}; "
